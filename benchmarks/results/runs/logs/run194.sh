# Session 26, run 194: LM head variants by energy, in one process, sustained and alternating
# (.run194-ab.py); then bench_train_step's headline pair with the sustained columns.
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
cp benchmarks/.run194-ab.py $R/run194-ab.py
(cd benchmarks && VARIANTS=tree,expcoop,group16,group64,onechunk ROUNDS=2 SUSTAIN_S=16 \
  timeout 330 python3 .run194-ab.py > $R/ab.log 2>&1); echo "ab rc=$? t=$((SECONDS-S))"; pack
bench() {
  local config=$1 tag=$2 limit=$3; shift 3
  [ $(left) -lt $limit ] && { echo "$config $tag skipped (time)"; return; }
  env "$@" FASTGPT_BENCH_OUT=$R/table$tag timeout $limit python3 -m pytest "benchmarks/bench_train_step.py::test_train_step[$config]" \
    --benchmark-only -q -p no:cacheprovider --benchmark-json=$R/pytest/train_step-$config-$tag.json >> $R/train_step.log 2>&1
  echo "$config $tag rc=$? t=$((SECONDS-S))"; pack
}
bench reference-compile 1 110
bench triton-adamwcopy-cudagraph 1 80
grep -E '^(built|round)' $R/ab.log; tail -7 $R/ab.log
cat $R/table*/train_step.md 2>/dev/null
pack; rm -rf $R
