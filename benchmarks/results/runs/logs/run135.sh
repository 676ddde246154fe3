set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
nvidia-smi --query-gpu=name --format=csv,noheader
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cd benchmarks
for i in 1 2 3; do
  for m in 1 inline 0; do
    FASTGPT_GRAPH_MEMSETS=$m timeout 80 python3 .run124-step.py 2>&1 | grep -v Warn | tail -1 | tee -a $R/step.log
  done
done
echo "t=$((SECONDS-S))"
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
