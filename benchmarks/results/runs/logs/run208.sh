# Session 28, run 208: the LayerNorm folded into its consumer GEMM, row statistics from the A tiles (.run208-fold.py).
set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm,temperature.gpu --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cp benchmarks/.run208-fold.py $R/run208-fold.py; cp benchmarks/.run208_fold_gluon.py $R/run208_fold_gluon.py
(cd benchmarks && timeout 400 python3 .run208-fold.py > $R/fold.log 2>&1); echo "fold rc=$? t=$((SECONDS-S))"
grep -E '^(CHECK|RESULT)' $R/fold.log || tail -30 $R/fold.log
(cd $R && tar czf $OUT/logs.tgz .); rm -rf $R
