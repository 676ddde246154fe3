set -u
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$?"
cd benchmarks
for c in triton-adamwcopy-cudagraph reference-compile; do
  timeout 120 python3 .run151-clock.py $c 2>&1 | grep -v Warn | tail -1 | tee -a $R/clock.log
done
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
