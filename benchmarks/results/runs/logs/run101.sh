set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
timeout 200 python3 benchmarks/.runS16B.py $R/best.json > $R/kernels.log 2>&1; echo "kernels rc=$? t=$((SECONDS-S))"
grep RESULT $R/kernels.log | cut -c1-300; tail -3 $R/kernels.log | grep -v RESULT | cut -c1-300
timeout 100 python3 benchmarks/.runS16B.py --noop > $R/noop.log 2>&1; echo "noop rc=$? t=$((SECONDS-S))"
grep RESULT $R/noop.log | cut -c1-200; tail -3 $R/noop.log | grep -v RESULT | cut -c1-300
[ -f $R/best.json ] && { timeout $((590-(SECONDS-S))) python3 benchmarks/.runS16B_step.py $R/best.json > $R/step.log 2>&1; echo "step rc=$? t=$((SECONDS-S))"; grep -E "RESULT|tile" $R/step.log; tail -2 $R/step.log | grep -v RESULT | cut -c1-300; }
cd $R && tar czf $OUT/logs.tgz .
