set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
nvidia-smi --query-gpu=name --format=csv,noheader
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_graph_memsets.py tests/test_cuda_graph.py 2>&1 | tail -4 | tee $R/tests.log; echo "tests t=$((SECONDS-S))"
cd benchmarks
timeout 200 python3 .run125-modes.py 2>&1 | grep -v Warn | tee $R/modes.log; echo "modes t=$((SECONDS-S))"
FASTGPT_GRAPH_MEMSETS=1 timeout 100 python3 .run122-timeline.py triton-adamwcopy-cudagraph $R > $R/timeline.log 2>&1; echo "timeline rc=$? t=$((SECONDS-S))"
head -12 $R/timeline.log
cd $R && rm -f trace-*.json && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
