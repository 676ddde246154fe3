set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__, "gpus", torch.cuda.device_count())'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cp benchmarks/.run178-*.py $R/
timeout 150 python3 benchmarks/.run178-fwd-diag.py > $R/fwd-diag.log 2>&1; echo "diag rc=$? t=$((SECONDS-S))"
grep -E "RESULT|Error" $R/fwd-diag.log | cut -c1-200
cd benchmarks
timeout 150 python3 .run178-breakdown.py triton-adamwcopy-cudagraph $R > $R/breakdown-ours.log 2>&1; echo "ours rc=$? t=$((SECONDS-S))"
timeout 200 python3 .run178-breakdown.py reference-compile $R > $R/breakdown-ref.log 2>&1; echo "ref rc=$? t=$((SECONDS-S))"
rm -f $R/trace-*.json
head -40 $R/breakdown-ours.log | cut -c1-150
head -30 $R/breakdown-ref.log | cut -c1-150
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
