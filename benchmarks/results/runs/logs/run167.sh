set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cp benchmarks/.run167-*.py $R/
timeout 150 python3 benchmarks/.run167-attn.py > $R/attn.log 2>&1; echo "attn rc=$? t=$((SECONDS-S))"
grep -E "WRONG|CHECK all|RESULT|Error" $R/attn.log | cut -c1-220; tail -4 $R/attn.log | cut -c1-300
if grep -q "CHECK all ok" $R/attn.log; then
  timeout 200 python3 -m pytest -q -n 8 -x -p no:cacheprovider tests/test_attention.py > $R/gpu-tests.log 2>&1; echo "tests rc=$? t=$((SECONDS-S))"
  tail -1 $R/gpu-tests.log; grep -E "^(FAILED|ERROR)" $R/gpu-tests.log | head
  cd benchmarks
  for i in 1 2 3; do
    for m in auto triton; do
      FWD_KERNEL=$m timeout 120 python3 .run167-step.py 2>&1 | grep -v Warn | tail -1 | tee -a $R/step.log
    done
  done
fi
echo "t=$((SECONDS-S))"
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
