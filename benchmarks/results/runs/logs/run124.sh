set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
nvidia-smi --query-gpu=name --format=csv,noheader
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cd benchmarks
timeout 60 python3 .run124-check.py 2>&1 | grep -v Warn | tee $R/check.log; echo "check t=$((SECONDS-S))"
for i in 1 2 3; do
  for m in 1 0; do
    FASTGPT_GRAPH_MEMSETS=$m timeout 80 python3 .run124-step.py 2>&1 | grep -v Warn | tee -a $R/step.log
  done
done
echo "ab t=$((SECONDS-S))"
timeout 100 python3 .run122-timeline.py triton-adamwcopy-cudagraph $R > $R/timeline.log 2>&1; echo "timeline rc=$? t=$((SECONDS-S))"
head -30 $R/timeline.log
cd $R && rm -f trace-*.json && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
