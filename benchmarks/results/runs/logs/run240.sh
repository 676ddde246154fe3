# Session 30, run 240: the headline pair once more on session 30's code (20 s sustained a configuration), fastgpt first, on a freshly started machine.
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
bench() {
  local config=$1 tag=$2 limit=$3; shift 3
  [ $(left) -lt $limit ] && { echo "$config $tag skipped (time)"; return; }
  env "$@" FASTGPT_BENCH_OUT=$R/table$tag timeout $limit python3 -m pytest "benchmarks/bench_train_step.py::test_train_step[$config]" \
    --benchmark-only -q -p no:cacheprovider --benchmark-json=$R/pytest/train_step-$config-$tag.json >> $R/train_step.log 2>&1
  echo "$config $tag rc=$? t=$((SECONDS-S))"; pack
}
bench triton-adamwcopy-cudagraph 5 130 FASTGPT_BENCH_SUSTAIN_S=20
bench reference-compile 5 140 FASTGPT_BENCH_SUSTAIN_S=20
cat $R/table*/train_step.md 2>/dev/null
pack; rm -rf $R
