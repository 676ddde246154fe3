set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R/pytest
left() { echo $((585-(SECONDS-S))); }
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=1 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
python3 benchmarks/.runS17G_overhead.py 2>&1 | tee $R/overhead.log
bench() {  # name flag tag timeout
  [ $(left) -lt $4 ] && { echo "$1 $3 skipped (time)"; return; }
  FASTGPT_CUBLASLT=$2 FASTGPT_BENCH_OUT=$R/$3 timeout $4 python3 -m pytest "benchmarks/bench_train_step.py::test_train_step[$1]" --benchmark-only -q \
    -p no:cacheprovider --benchmark-json=$R/pytest/train_step-$1-$3.json >> $R/train_step.log 2>&1
  echo "$1 $3 rc=$? t=$((SECONDS-S))"; tail -1 $R/$3/train_step.md 2>/dev/null
}
bench triton-compile 1 lt1 110
bench triton 0 lt0 45
bench triton 1 lt1 45
timeout $(( $(left) - 10 )) python3 -m pytest -q -p no:cacheprovider tests/test_gemm.py tests/test_compile.py tests/test_model.py tests/test_cuda_graph.py tests/test_train.py tests/test_autocast.py tests/test_cuda_ext.py tests/test_cross_entropy.py > $R/gpu-tests.log 2>&1; echo "tests rc=$? t=$((SECONDS-S))"; tail -3 $R/gpu-tests.log
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
