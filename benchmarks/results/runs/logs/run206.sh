# Session 27, run 206: run 201's A/B with the build order reversed (.run206-ab.py), on run 205's machine.
set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cp benchmarks/.run206-ab.py $R/run206-ab.py
(cd benchmarks && ROUNDS=1 SUSTAIN_S=10 timeout 100 python3 .run206-ab.py > $R/ab.log 2>&1); echo "ab rc=$? t=$((SECONDS-S))"
grep -E '^(built|round|window)' $R/ab.log || tail -20 $R/ab.log
(cd $R && tar czf $OUT/logs.tgz .); rm -rf $R
