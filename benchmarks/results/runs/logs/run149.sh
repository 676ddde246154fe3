set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
nvidia-smi --query-gpu=name --format=csv,noheader
FASTGPT_BUILD_CUDA=1 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
FASTGPT_AUTOTUNE=0 timeout 540 python3 -m pytest -q -n 8 -p no:cacheprovider tests > $R/gpu-tests.log 2>&1; echo "tests rc=$? t=$((SECONDS-S))"
tail -2 $R/gpu-tests.log; grep -E "^(FAILED|ERROR)" $R/gpu-tests.log | head -20
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
