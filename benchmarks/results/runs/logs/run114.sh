set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
timeout 100 python3 -m pytest -q -p no:cacheprovider tests/test_gemm.py > $R/gpu-tests.log 2>&1; echo "tests rc=$? t=$((SECONDS-S))"; tail -2 $R/gpu-tests.log
st() { timeout 60 python3 benchmarks/.runS17D_step.py "$@" >> $R/steps.log 2>&1; echo "rc=$? t=$((SECONDS-S))"; grep "^chunk" $R/steps.log | tail -1; }
FASTGPT_CUBLASLT=1 st 0 v
FASTGPT_CUBLASLT=0 st 0
FASTGPT_CUBLASLT=1 st 0
FASTGPT_CUBLASLT=0 st 0
FASTGPT_CUBLASLT=1 st 8192
FASTGPT_CUBLASLT=1 st 0
FASTGPT_CUBLASLT=1 st 8192
FASTGPT_CUBLASLT=0 st 0
grep "^  " $R/steps.log | head -14 | cut -c1-200
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
