set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R/pytest
left() { echo $((570-(SECONDS-S))); }
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_gemm.py tests/test_linear.py tests/test_cuda_graph.py -x > $R/gpu-tests.log 2>&1; echo "tests rc=$? t=$((SECONDS-S))"; tail -3 $R/gpu-tests.log
bench() {  # name flag tag timeout
  [ $(left) -lt $4 ] && { echo "$1 $3 skipped (time)"; return; }
  FASTGPT_CUBLASLT=$2 FASTGPT_BENCH_OUT=$R/$3 timeout $4 python3 -m pytest "benchmarks/bench_train_step.py::test_train_step[$1]" --benchmark-only -q \
    -p no:cacheprovider --benchmark-json=$R/pytest/train_step-$1-$3.json >> $R/train_step.log 2>&1
  echo "$1 $3 rc=$? t=$((SECONDS-S))"; tail -1 $R/$3/train_step.md 2>/dev/null
}
bench triton-adamwcopy-cudagraph 1 lt1 80
bench triton-adamwcopy-cudagraph 0 lt0 80
bench triton-adamwcopy-cudagraph 1 lt1b 80
bench triton-adamwcopy-cudagraph 0 lt0b 80
FASTGPT_CUBLASLT=1 timeout 90 python3 benchmarks/host_profile.py --out $R/prof --parts kernels --configs triton-adamwcopy-cudagraph > $R/prof.log 2>&1; echo "prof rc=$? t=$((SECONDS-S))"
head -24 $R/prof/kernels-*.md | cut -c1-120
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
