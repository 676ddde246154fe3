set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/env.txt; python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)' >> $R/env.txt; cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
timeout 150 python3 benchmarks/.runS15D.py > $R/dq_configs.log 2>&1; echo "dq rc=$? t=$((SECONDS-S))"; grep RESULT $R/dq_configs.log; grep -iE "error|Traceback" $R/dq_configs.log | head -5 | cut -c1-300
for d in 0 4 0 4; do
  FASTGPT_GLUON_DIAG=$d TRITON_CACHE_DIR=/tmp/tc$d timeout 90 python3 benchmarks/.runS15B.py >> $R/gluon_diag.log 2>&1; echo "diag $d rc=$? t=$((SECONDS-S))"
done
FASTGPT_GLUON_DIAG=4 TRITON_CACHE_DIR=/tmp/tc4 timeout 60 python3 benchmarks/.runS15F.py > $R/diag4_check.log 2>&1; echo "check rc=$? t=$((SECONDS-S))"; grep RESULT $R/diag4_check.log
grep RESULT $R/gluon_diag.log; grep -iE "error|Traceback" $R/gluon_diag.log | head -5 | cut -c1-300
bench() {  # name env timeout
  mkdir -p $R/$1/pytest
  env $2 FASTGPT_BENCH_OUT=$R/$1 timeout $3 python3 -m pytest "benchmarks/bench_train_step.py::test_train_step[triton-adamwcopy-cudagraph]" --benchmark-only -q \
    -p no:cacheprovider --benchmark-json=$R/$1/pytest/train_step.json >> $R/$1.log 2>&1
  echo "$1 rc=$? t=$((SECONDS-S))"; grep -h "triton-adamwcopy" $R/$1/train_step.md 2>/dev/null | head -2
}
if grep -q "'nan': false\|\"nan\": false" $R/diag4_check.log; then
  bench diag0a "FASTGPT_GLUON_DIAG=0 TRITON_CACHE_DIR=/tmp/tc0" 80
  bench diag4a "FASTGPT_GLUON_DIAG=4 TRITON_CACHE_DIR=/tmp/tc4" 80
fi
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
