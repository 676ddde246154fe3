set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R/pytest
left() { echo $((530-(SECONDS-S))); }
pack() { (cd $R && tar czf $OUT/logs.tgz .); }
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__, "gpus", torch.cuda.device_count())'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
bench() {
  [ $(left) -lt $2 ] && { echo "$1 skipped (time)"; return; }
  FASTGPT_BENCH_OUT=$R/table timeout $2 python3 -m pytest "benchmarks/bench_train_step.py::test_train_step[$1]" --benchmark-only -q \
    -p no:cacheprovider --benchmark-json=$R/pytest/train_step-$1.json >> $R/train_step.log 2>&1
  echo "$1 rc=$? t=$((SECONDS-S))"; pack
}
bench triton-adamwcopy-cudagraph 80
bench reference-compile 90
bench triton-prekept-adamwcopy-cudagraph 50
bench reference-compile-cudagraphs 90
bench reference-eager 40
bench triton 45
bench triton-tritonmlp-adamwcopy-cudagraph 40
bench triton-compile 100
[ $(left) -gt 90 ] && { FASTGPT_BUILD_CUDA=1 python3 -m pip install --no-deps --no-build-isolation -e . >> $R/install.log 2>&1; echo "cuda install rc=$? t=$((SECONDS-S))"; }
bench cuda-adamwcopy-cudagraph 45
cat $R/table/train_step.md 2>/dev/null
pack; rm -rf $R
