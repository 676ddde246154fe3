set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
FASTGPT_BUILD_CUDA=1 python3 -m pip install --no-deps --no-build-isolation -e . > /tmp/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
FASTGPT_AUTOTUNE=0 timeout 300 python3 -m pytest -q -p no:cacheprovider tests/test_graph_memsets.py tests/test_cuda_graph.py "tests/test_mlp.py::test_cuda_cublaslt_mlp" "tests/test_mlp.py::test_cuda_gemm_auto_takes_cublaslt_only_where_it_applies" 2>&1 | tail -3
echo "t=$((SECONDS-S))"
