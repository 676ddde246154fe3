set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
timeout 200 python3 -m pytest benchmarks/bench_gemm.py --benchmark-only -q -p no:cacheprovider --benchmark-json=$R/gemm.json > $R/bench_gemm.log 2>&1; echo "bench rc=$? t=$((SECONDS-S))"
python3 benchmarks/report.py $R/gemm.json 2>&1 | head -40
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
