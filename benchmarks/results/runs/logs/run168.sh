set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cp benchmarks/.run168*.py $R/
cd benchmarks
timeout 90 python3 .run168-diag.py ref 2>&1 | grep -v Warn | tee -a $R/diag.log | grep -E "RESULT|CHECK|Error"
for e in "1 1 1" "0 1 1" "1 0 1" "1 1 0" "0 0 1"; do
  set -- $e
  DIAG_EXP=$1 DIAG_PV=$2 DIAG_TURN=$3 timeout 90 python3 .run168-diag.py 2>&1 | grep -v Warn | tee -a $R/diag.log | grep -E "RESULT|CHECK|Error"
  echo "t=$((SECONDS-S))"
done
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
