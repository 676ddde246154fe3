set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
timeout 150 python3 benchmarks/.run162-colsum.py > $R/colsum.log 2>&1; echo "colsum rc=$? t=$((SECONDS-S))"; grep -E "RESULT|WRONG" $R/colsum.log | cut -c1-120; tail -3 $R/colsum.log
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
