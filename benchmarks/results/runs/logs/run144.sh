set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
nvidia-smi --query-gpu=name --format=csv,noheader
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
FASTGPT_AUTOTUNE=0 timeout 200 python3 -m pytest -q -n 8 -p no:cacheprovider tests/test_cross_entropy.py tests/test_gemm.py tests/test_model.py > $R/gpu-tests.log 2>&1; echo "tests rc=$? t=$((SECONDS-S))"
tail -1 $R/gpu-tests.log; grep -E "^(FAILED|ERROR)" $R/gpu-tests.log | head
cd benchmarks
timeout 150 python3 .run144-timeline.py triton-adamwcopy-cudagraph $R > $R/timeline.log 2>&1; echo "timeline rc=$? t=$((SECONDS-S))"
head -14 $R/timeline.log
rm -f $R/trace-*.json
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
