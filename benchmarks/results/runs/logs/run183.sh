set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cp benchmarks/.run183-*.py $R/
timeout 200 python3 benchmarks/.run183-bk.py > $R/bk.log 2>&1; echo "bk rc=$? t=$((SECONDS-S))"
grep -E "CHECK|RESULT|Error" $R/bk.log | cut -c1-200
cd benchmarks
for i in 1 2 3; do
  for v in "32 10" "64 5"; do
    set -- $v
    BK=$1 STAGES=$2 timeout 100 python3 .run183-step.py 2>&1 | grep -v Warn | tail -1 | tee -a $R/step.log
  done
done
echo "step t=$((SECONDS-S))"
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
