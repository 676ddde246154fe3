set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
FASTGPT_AUTOTUNE=0 timeout 300 python3 -m pytest -q -n 8 -p no:cacheprovider tests/test_adamw.py tests/test_common.py tests/test_cuda_graph.py tests/test_model.py tests/test_train.py > $R/gpu-tests.log 2>&1; echo "tests rc=$? t=$((SECONDS-S))"
tail -1 $R/gpu-tests.log; grep -E "^(FAILED|ERROR)" $R/gpu-tests.log | head -20
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
