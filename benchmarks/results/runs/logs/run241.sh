# Session 31, run 241: the MLP backward's column sums as the transposed narrow product: the kernel A/B against f1d5163's and without partials, the step's A/B at the cap (.run241-bwd-sums.py), GPU tests of the MLP.
set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm,temperature.gpu --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cp benchmarks/.run241-bwd-sums.py $R/
(cd benchmarks && STEP=0 timeout 120 python3 .run241-bwd-sums.py > $R/kernels.log 2>&1); echo "kernels rc=$? t=$((SECONDS-S))"
grep -E '^(CHECK|RESULT)' $R/kernels.log; tail -4 $R/kernels.log | grep -v RESULT
FASTGPT_AUTOTUNE=0 timeout 200 python3 -m pytest -q -n 8 -p no:cacheprovider tests/test_mlp.py > $R/gpu-tests.log 2>&1; echo "tests rc=$? t=$((SECONDS-S))"; tail -3 $R/gpu-tests.log
(cd $R && tar czf $OUT/logs.tgz .)
if grep -q "CHECK dpre equal True True" $R/kernels.log; then
  (cd benchmarks && KERNELS=0 ROUNDS=2 SUSTAIN_S=16 timeout 220 python3 .run241-bwd-sums.py > $R/ab.log 2>&1); echo "ab rc=$? t=$((SECONDS-S))"
  grep -vE '^(CHECK|RESULT)' $R/ab.log | grep -v "^\s*$" | tail -12
fi
(cd $R && tar czf $OUT/logs.tgz .); rm -rf $R
