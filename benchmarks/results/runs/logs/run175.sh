set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R/pytest
left() { echo $((585-(SECONDS-S))); }
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__, "gpus", torch.cuda.device_count())'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=1 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
python3 -c "from fastgpt.backend import cuda_extension_available as c; print('cuda ext', c())"
cp benchmarks/.run175-schedule.py $R/
timeout 80 python3 benchmarks/.run175-schedule.py > $R/schedule.log 2>&1; echo "schedule rc=$? t=$((SECONDS-S))"
grep -E "CHECK|RESULT|Error" $R/schedule.log | cut -c1-160
bench() {
  [ $(left) -lt $2 ] && { echo "$1 skipped (time)"; return; }
  timeout $2 python3 -m pytest benchmarks/bench_$1.py --benchmark-only -q -p no:cacheprovider \
    --benchmark-json=$R/pytest/$1.json > $R/bench_$1.log 2>&1
  echo "$1 rc=$? t=$((SECONDS-S))"; tail -1 $R/bench_$1.log
}
bench mlp 230
bench attention 200
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
