set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R/pytest
left() { echo $((570-(SECONDS-S))); }
pack() { (cd $R && tar czf $OUT/logs.tgz .); }
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cp benchmarks/.run188-*.py $R/
bench() {
  [ $(left) -lt $3 ] && { echo "$1 skipped (time)"; return; }
  FASTGPT_BENCH_OUT=$R/table$2 timeout $3 python3 -m pytest "benchmarks/bench_train_step.py::test_train_step[$1]" --benchmark-only -q \
    -p no:cacheprovider --benchmark-json=$R/pytest/train_step-$1-$2.json >> $R/train_step.log 2>&1
  echo "$1 round $2 rc=$? t=$((SECONDS-S))"; pack
}
bench reference-compile 1 90
bench triton-adamwcopy-cudagraph 1 80
cd benchmarks
timeout 90 python3 .run188-lmhead.py check > $R/check.log 2>&1; echo "check rc=$? t=$((SECONDS-S))"; grep -E "CHECK|Error" $R/check.log
for i in 1 2 3; do
  for m in kept tree single; do
    [ $(left) -lt 60 ] && break 2
    MODE=$m timeout 60 python3 .run188-lmhead.py step 2>&1 | grep -v Warn | tail -1 | tee -a $R/step.log
  done
  pack
done
echo "step t=$((SECONDS-S))"
cat $R/table*/train_step.md 2>/dev/null
pack; rm -rf $R
