set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
timeout 200 python3 benchmarks/.run161-attn-tma.py > $R/attn-tma.log 2>&1; echo "tma rc=$? t=$((SECONDS-S))"; grep -E "RESULT|WRONG|FAIL|CHECK" $R/attn-tma.log | cut -c1-200
timeout 150 python3 benchmarks/.run161-attn-tma.py ws > $R/attn-tma-ws.log 2>&1; echo "ws rc=$? t=$((SECONDS-S))"; grep -E "RESULT|WRONG|FAIL|CHECK" $R/attn-tma-ws.log | cut -c1-200; tail -3 $R/attn-tma-ws.log | cut -c1-300
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
