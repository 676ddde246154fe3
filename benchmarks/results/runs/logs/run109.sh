set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
FASTGPT_AUTOTUNE=0 timeout 150 python3 -m pytest tests/test_cross_entropy.py -q -n 8 -p no:cacheprovider > $R/tests.log 2>&1; echo "tests rc=$? t=$((SECONDS-S))"; tail -1 $R/tests.log; grep -E "^(FAILED|ERROR)" $R/tests.log | head -10
timeout 100 python3 benchmarks/.runS16J.py > $R/stages.log 2>&1; echo "stages rc=$? t=$((SECONDS-S))"
grep RESULT $R/stages.log | cut -c1-200; tail -3 $R/stages.log | grep -v RESULT | cut -c1-300
cd $R && tar czf $OUT/logs.tgz .
