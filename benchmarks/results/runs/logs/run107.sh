set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R/pytest
left() { echo $((560-(SECONDS-S))); }
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
timeout 150 python3 benchmarks/.runS16H.py > $R/group.log 2>&1; echo "group rc=$? t=$((SECONDS-S))"
grep RESULT $R/group.log | cut -c1-200; tail -3 $R/group.log | grep -v RESULT | cut -c1-300
FASTGPT_AUTOTUNE=0 timeout 150 python3 -m pytest tests/test_cross_entropy.py tests/test_mlp.py -q -n 8 -p no:cacheprovider > $R/tests.log 2>&1; echo "tests rc=$? t=$((SECONDS-S))"; tail -1 $R/tests.log; grep -E "^(FAILED|ERROR)" $R/tests.log | head -10
bench() {
  [ $(left) -lt $2 ] && { echo "$1 skipped (time)"; return; }
  FASTGPT_BENCH_OUT=$R timeout $2 python3 -m pytest "benchmarks/bench_train_step.py::test_train_step[$1]" --benchmark-only -q \
    -p no:cacheprovider --benchmark-json=$R/pytest/train_step-$1.json >> $R/train_step.log 2>&1
  echo "$1 rc=$? t=$((SECONDS-S))"
}
bench reference-compile 100
bench triton-adamwcopy-cudagraph 60
cat $R/train_step.md 2>/dev/null
cd $R && tar czf $OUT/logs.tgz .
