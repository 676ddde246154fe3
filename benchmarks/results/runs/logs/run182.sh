set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version --format=csv > $R/env.txt; cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cp benchmarks/.run182-*.py $R/
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
for skip in 2 5; do
  timeout 200 $NCU --clock-control none -k regex:_mlp_gluon_kernel --launch-skip $skip --launch-count 1 \
    --section SchedulerStats --section WarpStateStats --section SourceCounters --section InstructionStats --section LaunchStats --section Occupancy --section SpeedOfLight \
    -o $R/fwd$skip python3 benchmarks/.run182-ncu.py > $R/ncu$skip.log 2>&1; echo "ncu $skip rc=$? t=$((SECONDS-S))"
  $NCU -i $R/fwd$skip.ncu-rep --page details > $R/details$skip.txt 2>&1
  $NCU -i $R/fwd$skip.ncu-rep --page source --csv --print-source sass > $R/sass$skip.csv 2>&1
  grep -E "Duration|Issued Warp|No Eligible|Eligible Warps|Active Warps Per|Stall|Warp Cycles Per Issued" $R/details$skip.txt | head -20
done
ls -la $R
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
