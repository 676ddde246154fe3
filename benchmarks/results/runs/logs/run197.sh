# Session 26, run 197: the headline pair sustained for 40 s a configuration on a freshly started
# machine (run 195's 20 s rows ran at 53-60 C where warm GPUs sat at 64-67 C: NOTES Next GPU run
# 21), then the AdamW step's sustained cost (.run197-ab.py).
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
bench triton-adamwcopy-cudagraph 1 130 FASTGPT_BENCH_SUSTAIN_S=40
bench reference-compile 1 140 FASTGPT_BENCH_SUSTAIN_S=40
cp benchmarks/.run197-ab.py $R/run197-ab.py
[ $(left) -gt 100 ] && { (cd benchmarks && VARIANTS=tree,noadamw ROUNDS=2 SUSTAIN_S=16 timeout $(( $(left) - 10 )) python3 .run197-ab.py > $R/ab.log 2>&1); echo "ab rc=$? t=$((SECONDS-S))"; }
cat $R/table*/train_step.md 2>/dev/null; cat $R/ab.log 2>/dev/null | grep -E '^(built|round)'
pack; rm -rf $R
