set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
export PYTHONPATH=$PWD
timeout 400 python3 benchmarks/.runS17A_lt.py $R/lt.json 2>&1 | tee $R/lt.log | grep -v Warning
echo "lt t=$((SECONDS-S))"
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
