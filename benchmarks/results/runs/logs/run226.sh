# Session 29, run 226: the exp GEMM's shift loaded at the tile's start: GPU tests (MLP, cross-entropy), the kernels against the previous tree's, the step's A/B at the cap, the exp chunk's clock stamps (.run226-exp-shift.py).
set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm,temperature.gpu --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cp benchmarks/.run226-exp-shift.py $R/
FASTGPT_AUTOTUNE=0 timeout 260 python3 -m pytest -q -n 8 -p no:cacheprovider tests/test_mlp.py tests/test_cross_entropy.py > $R/gpu-tests.log 2>&1; echo "tests rc=$? t=$((SECONDS-S))"; tail -3 $R/gpu-tests.log
(cd benchmarks && ROUNDS=2 SUSTAIN_S=16 timeout 300 python3 .run226-exp-shift.py > $R/ab.log 2>&1); echo "ab rc=$? t=$((SECONDS-S))"
grep -E '^(CHECK|RESULT)' $R/ab.log; tail -12 $R/ab.log
(cd $R && tar czf $OUT/logs.tgz .); rm -rf $R
