# run 110b (session 16): the working tree had timing.measure reset its CUDA graph after timing
# (captured.reset(); not committed).
set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
peaks() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); [print(sys.argv[2], b['name'], round(b['extra_info']['median_ms'],4), round(b['extra_info']['peak_mem_gib'],3)) for b in d['benchmarks']]" $1 $2; }
timeout 150 python3 -m pytest benchmarks/bench_attention.py -k attention_module --benchmark-only -q -p no:cacheprovider --benchmark-json=$R/both.json > $R/both.log 2>&1; echo "both rc=$? t=$((SECONDS-S))"; peaks $R/both.json both
echo "--"
cd $R && tar czf $OUT/logs.tgz .
