# Session 26, run 195: bench_train_step's table with the sustained columns (20 s a configuration),
# one machine, one configuration a process (NOTES Next GPU run 18); the CUDA extension built for
# the cuda row.
set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R/pytest
left() { echo $((588-(SECONDS-S))); }
pack() { (cd $R && tar czf $OUT/logs.tgz .); }
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm,temperature.gpu --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=1 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
python3 -c "from fastgpt.backend import cuda_extension_available as c; print('cuda ext', c())"
bench() {
  local config=$1 limit=$2
  [ $(left) -lt $limit ] && { echo "$config skipped (time)"; return; }
  FASTGPT_BENCH_OUT=$R/table timeout $limit python3 -m pytest "benchmarks/bench_train_step.py::test_train_step[$config]" \
    --benchmark-only -q -p no:cacheprovider --benchmark-json=$R/pytest/train_step-$config.json >> $R/train_step.log 2>&1
  echo "$config rc=$? t=$((SECONDS-S))"; pack
}
bench reference-compile 110
bench triton-adamwcopy-cudagraph 110
bench reference-eager 75
bench reference-compile-cudagraphs 115
bench cuda-adamwcopy-cudagraph 75
bench triton 80
bench triton-prekept-adamwcopy-cudagraph 60
bench triton-tritonmlp-adamwcopy-cudagraph 70
cat $R/table/train_step.md 2>/dev/null
pack; rm -rf $R
