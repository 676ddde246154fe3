set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
python3 -c "import fastgpt" 2>/dev/null || { FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"; }
cd benchmarks
timeout 250 python3 .run134-bn192.py 2>&1 | grep -v Warn | tee $R/bn192.log; echo "t=$((SECONDS-S))"
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
