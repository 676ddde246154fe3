# Session 27, run 201: StepDuringBackward in the attention backward windows, joined at their ends: GPU tests, then the A/B (.run201-ab.py).
set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm,temperature.gpu --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
FASTGPT_AUTOTUNE=0 timeout 200 python3 -m pytest -q -n 8 -p no:cacheprovider tests/test_cuda_graph.py tests/test_adamw.py tests/test_train.py > $R/gpu-tests.log 2>&1; echo "tests rc=$? t=$((SECONDS-S))"
tail -3 $R/gpu-tests.log; grep -E "^(FAILED|ERROR)" $R/gpu-tests.log | head
cp benchmarks/.run201-ab.py $R/run201-ab.py
(cd benchmarks && ROUNDS=2 SUSTAIN_S=16 timeout 300 python3 .run201-ab.py > $R/ab.log 2>&1); echo "ab rc=$? t=$((SECONDS-S))"
grep -E '^(built|round|window)' $R/ab.log || tail -20 $R/ab.log
(cd $R && tar czf $OUT/logs.tgz .); rm -rf $R
