set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R/pytest
left() { echo $((580-(SECONDS-S))); }
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=1 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
timeout 90 /usr/local/cuda/bin/ncu --profile-from-start off --metrics gpu__time_duration.sum,lts__t_bytes.sum,dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sector_hit_rate.pct --csv python3 benchmarks/.runS16G_ncu.py > $R/ncu.csv 2> $R/ncu.err; echo "ncu rc=$? t=$((SECONDS-S))"
grep -E "gpu__time|lts__t_bytes|dram__bytes|hit_rate" $R/ncu.csv | cut -c1-60,200-330
FASTGPT_AUTOTUNE=0 timeout $(( $(left) - 110 )) python3 -m pytest tests -q -n 8 -p no:cacheprovider > $R/tests.log 2>&1; echo "tests rc=$? t=$((SECONDS-S))"; tail -1 $R/tests.log; grep -E "^(FAILED|ERROR)" $R/tests.log | head -20
bench() {
  [ $(left) -lt $2 ] && { echo "$1 skipped (time)"; return; }
  FASTGPT_BENCH_OUT=$R timeout $2 python3 -m pytest "benchmarks/bench_train_step.py::test_train_step[$1]" --benchmark-only -q \
    -p no:cacheprovider --benchmark-json=$R/pytest/train_step-$1.json >> $R/train_step.log 2>&1
  echo "$1 rc=$? t=$((SECONDS-S))"
}
bench triton-adamwcopy-cudagraph 60
bench reference-compile 100
cat $R/train_step.md 2>/dev/null
cd $R && tar czf $OUT/logs.tgz .
