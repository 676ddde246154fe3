# Session 26, run 196: the whole GPU test suite on the final code (CUDA extension built), the
# convergence check, then the headline pair with the sustained columns if time is left.
set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R/pytest
left() { echo $((590-(SECONDS-S))); }
pack() { (cd $R && tar czf $OUT/logs.tgz .); }
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__, "gpus", torch.cuda.device_count())'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=1 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
python3 -c "from fastgpt.backend import cuda_extension_available as c; print('cuda ext', c())"
FASTGPT_AUTOTUNE=0 timeout 330 python3 -m pytest -q -n 8 -p no:cacheprovider tests > $R/gpu-tests.log 2>&1; echo "tests rc=$? t=$((SECONDS-S))"; pack
tail -1 $R/gpu-tests.log; grep -E "^(FAILED|ERROR)" $R/gpu-tests.log | head -20
timeout 200 python3 benchmarks/convergence.py --steps 400 --out $R/convergence.json > $R/convergence.log 2>&1; echo "conv rc=$? t=$((SECONDS-S))"; pack; tail -4 $R/convergence.log
bench() {
  [ $(left) -lt $3 ] && { echo "$1 skipped (time)"; return; }
  FASTGPT_BENCH_OUT=$R/table$2 timeout $3 python3 -m pytest "benchmarks/bench_train_step.py::test_train_step[$1]" --benchmark-only -q \
    -p no:cacheprovider --benchmark-json=$R/pytest/train_step-$1-$2.json >> $R/train_step.log 2>&1
  echo "$1 round $2 rc=$? t=$((SECONDS-S))"; pack
}
bench triton-adamwcopy-cudagraph 1 75
bench reference-compile 1 100


cat $R/table*/train_step.md 2>/dev/null
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
