# Session 28, run 211: the tree's Gluon kernel compiled ahead of time by Triton 3.9 against the GPU's 3.6 JIT (.run211-time.py).
set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm,temperature.gpu --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$?"
cp benchmarks/.run211-time.py $R/run211-time.py; cp benchmarks/.run211-build.py $R/run211-build.py; cp benchmarks/.run211_mlp_gluon39.py $R/run211_mlp_gluon39.py
(cd benchmarks && FASTGPT_BUILD_CUDA=0 timeout 300 python3 .run211-time.py > $R/time.log 2>&1); echo "launch rc=$? t=$((SECONDS-S))"
cat $R/time.log | tail -20
(cd $R && tar czf $OUT/logs.tgz .); rm -rf $R
