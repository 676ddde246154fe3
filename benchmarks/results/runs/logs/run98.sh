set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__, "gpus", torch.cuda.device_count())'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
FASTGPT_AUTOTUNE=0 timeout 200 python3 -m pytest tests/test_attention.py tests/test_model.py tests/test_cuda_graph.py -q -n 8 -p no:cacheprovider > $R/tests.log 2>&1; echo "tests rc=$? t=$((SECONDS-S))"; tail -1 $R/tests.log; grep -E "^(FAILED|ERROR)" $R/tests.log | head -20
timeout 100 python3 benchmarks/.runS15I.py > $R/attention_tiles.log 2>&1; echo "tiles rc=$? t=$((SECONDS-S))"; grep RESULT $R/attention_tiles.log | grep dq_bias | sed 's/RESULT //' | cut -c1-160
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
