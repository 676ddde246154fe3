# Session 28, run 218: the LM head exp GEMM with the weight tile multicast to CTA pairs, Triton 3.9 ahead of time (.run218-time.py).
set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm,temperature.gpu --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$?"
cp benchmarks/.run218-time.py $R/run218-time.py; cp benchmarks/.run218-build.py $R/run218-build.py; cp benchmarks/.run218_exp_mc.py $R/run218_exp_mc.py
(cd benchmarks && FASTGPT_BUILD_CUDA=0 timeout 150 python3 .run218-time.py > $R/time.log 2>&1); echo "launch rc=$? t=$((SECONDS-S))"
cat $R/time.log | tail -20
(cd $R && tar czf $OUT/logs.tgz .); rm -rf $R
