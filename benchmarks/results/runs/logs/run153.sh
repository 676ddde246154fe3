set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
nvidia-smi --query-gpu=name --format=csv,noheader
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cp benchmarks/.run153-*.py $R/
timeout 150 python3 benchmarks/.run153-attn.py 2>&1 | grep -v Warn | tee $R/attn.log; echo "t=$((SECONDS-S))"
cd benchmarks
for i in 1 2 3; do
  FASTGPT_ATTENTION_BWD=concurrent timeout 90 python3 .run153-step.py 2>&1 | grep -v Warn | tail -1 | tee -a $R/step.log
  timeout 90 python3 .run153-step.py 2>&1 | grep -v Warn | tail -1 | tee -a $R/step.log
  CHUNK=8192 timeout 90 python3 .run153-step.py 2>&1 | grep -v Warn | tail -1 | tee -a $R/step.log
done
echo "t=$((SECONDS-S))"
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
