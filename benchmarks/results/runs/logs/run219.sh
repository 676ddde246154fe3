# Session 28, run 219: the single-accumulator exp GEMM in 3.6 against the tree (.run219-exp.py).
set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm,temperature.gpu --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cp benchmarks/.run219-exp.py $R/run219-exp.py; cp benchmarks/.run219_exp_single.py $R/run219_exp_single.py
(cd benchmarks && timeout 400 python3 .run219-exp.py > $R/exp.log 2>&1); echo "anatomy rc=$? t=$((SECONDS-S))"
grep -E '^(CHECK|RESULT)' $R/exp.log || tail -30 $R/exp.log
(cd $R && tar czf $OUT/logs.tgz .); rm -rf $R
