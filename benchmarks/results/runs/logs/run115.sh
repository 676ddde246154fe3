set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=1 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
timeout 330 python3 -m pytest -q -p no:cacheprovider tests/test_gemm.py tests/test_linear.py tests/test_mlp.py tests/test_cross_entropy.py tests/test_model.py tests/test_cuda_graph.py tests/test_train.py tests/test_compile.py tests/test_autocast.py tests/test_cuda_ext.py > $R/gpu-tests.log 2>&1; echo "tests rc=$? t=$((SECONDS-S))"; tail -3 $R/gpu-tests.log
timeout 60 python3 benchmarks/host_profile.py --out $R/prof --parts kernels --configs triton-adamwcopy-cudagraph > $R/prof.log 2>&1; echo "prof rc=$? t=$((SECONDS-S))"; head -1 $R/prof/kernels-*.md
timeout $((580-(SECONDS-S))) python3 benchmarks/convergence.py --steps 400 --out $R/convergence.json > $R/convergence.log 2>&1; echo "conv rc=$? t=$((SECONDS-S))"; tail -2 $R/convergence.log
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
