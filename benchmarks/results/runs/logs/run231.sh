# Session 30, run 231: the MLP forward's halves in their own blocks: GPU tests of the MLP, the kernel against the previous tree's (.run231_before_gluon.py: kernels/mlp_gluon.py at 7b124e6), the step's A/B at the cap (.run231-fwd-order.py).
set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm,temperature.gpu --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cp benchmarks/.run231-fwd-order.py $R/
(cd benchmarks && ROUNDS=2 SUSTAIN_S=16 timeout 300 python3 .run231-fwd-order.py > $R/ab.log 2>&1); echo "ab rc=$? t=$((SECONDS-S))"
grep -E '^(CHECK|RESULT)' $R/ab.log; tail -9 $R/ab.log
FASTGPT_AUTOTUNE=0 timeout 200 python3 -m pytest -q -n 8 -p no:cacheprovider tests/test_mlp.py > $R/gpu-tests.log 2>&1; echo "tests rc=$? t=$((SECONDS-S))"; tail -3 $R/gpu-tests.log
(cd $R && tar czf $OUT/logs.tgz .); rm -rf $R
