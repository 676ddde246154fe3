set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
nvidia-smi --query-gpu=name --format=csv,noheader
python3 -c "import fastgpt" 2>/dev/null || { FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"; }
cd benchmarks
timeout 300 python3 .run123-graphtime.py $R/graphtime.json > $R/graphtime.log 2>&1; echo "graphtime rc=$? t=$((SECONDS-S))"
cat $R/graphtime.log | grep -v Warning | head -150
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
