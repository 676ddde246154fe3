# Session 28, run 220: the exp GEMM with one accumulator a consumer in the tree: GPU tests, the kernel against the previous tree's, and the step's A/B at the cap (.run220-ab.py).
set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm,temperature.gpu --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cp benchmarks/.run220-ab.py $R/run220-ab.py
FASTGPT_AUTOTUNE=0 timeout 200 python3 -m pytest -q -n 8 -p no:cacheprovider tests/test_cross_entropy.py > $R/gpu-tests.log 2>&1; echo "tests rc=$? t=$((SECONDS-S))"; tail -3 $R/gpu-tests.log
(cd benchmarks && ROUNDS=2 SUSTAIN_S=16 timeout 330 python3 .run220-ab.py > $R/ab.log 2>&1); echo "ab rc=$? t=$((SECONDS-S))"
grep -E '^(CHECK|RESULT|built|round|tree|exp-)' $R/ab.log || tail -20 $R/ab.log
(cd $R && tar czf $OUT/logs.tgz .); rm -rf $R
