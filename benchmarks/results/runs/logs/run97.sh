set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $R/env.txt 2>&1; cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
MET=gpu__time_duration.sum,lts__t_sector_hit_rate.pct,lts__t_sector_op_read_hit_rate.pct,lts__t_sector_op_write_hit_rate.pct,dram__bytes_read.sum,dram__bytes_write.sum,lts__t_bytes.sum
for d in 0; do
  FASTGPT_GLUON_FWD=pingpong3 FASTGPT_GLUON_DIAG=$d TRITON_CACHE_DIR=/tmp/tc$d timeout 120 /usr/local/cuda/bin/ncu --kernel-name regex:"_mlp_gluon_kernel|nvjet" --launch-skip 4 --launch-count 3 --metrics $MET --csv python3 benchmarks/.runS15N.py > $R/ncu_fwd192_diag$d.csv 2> $R/ncu_fwd192_diag$d.err; echo "ncu diag $d rc=$? t=$((SECONDS-S))"
  grep -E "gpu__time|hit_rate|dram__bytes|lts__t_bytes" $R/ncu_fwd192_diag$d.csv | awk -F'","' '{print substr($5,1,40), $(NF-2), $(NF-1), $NF}' | cut -c1-160
done
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
