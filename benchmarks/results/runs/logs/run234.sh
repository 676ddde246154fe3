# Session 30, run 234: the whole GPU test suite on session 30's code, then the headline pair once more (20 s sustained a configuration), on a freshly started machine.
set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R/pytest
left() { echo $((585-(SECONDS-S))); }
pack() { (cd $R && tar czf $OUT/logs.tgz .); }
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm,temperature.gpu --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
timeout 290 python3 -m pytest tests/ -q -n 8 -p no:cacheprovider > $R/gpu-tests.log 2>&1; echo "tests rc=$? t=$((SECONDS-S))"; tail -3 $R/gpu-tests.log; pack
bench() {
  local config=$1 tag=$2 limit=$3; shift 3
  [ $(left) -lt $limit ] && { echo "$config $tag skipped (time)"; return; }
  env "$@" FASTGPT_BENCH_OUT=$R/table$tag timeout $limit python3 -m pytest "benchmarks/bench_train_step.py::test_train_step[$config]" \
    --benchmark-only -q -p no:cacheprovider --benchmark-json=$R/pytest/train_step-$config-$tag.json >> $R/train_step.log 2>&1
  echo "$config $tag rc=$? t=$((SECONDS-S))"; pack
}
bench triton-adamwcopy-cudagraph 3 110 FASTGPT_BENCH_SUSTAIN_S=20
bench reference-compile 3 120 FASTGPT_BENCH_SUSTAIN_S=20
cat $R/table*/train_step.md 2>/dev/null
pack; rm -rf $R
