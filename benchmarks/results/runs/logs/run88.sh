set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__, "gpus", torch.cuda.device_count())'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
OUT=$R timeout 120 python3 benchmarks/probe_gluon_192.py > $R/probe192.log 2>&1; echo "probe rc=$? t=$((SECONDS-S))"; grep RESULT $R/probe192.log; grep -iE "error|exception" $R/probe192.log | head -5 | cut -c1-300
bench() {  # name env timeout
  mkdir -p $R/$1/pytest
  env $2 FASTGPT_BENCH_OUT=$R/$1 timeout $3 python3 -m pytest "benchmarks/bench_train_step.py::test_train_step[triton-adamwcopy-cudagraph]" --benchmark-only -q \
    -p no:cacheprovider --benchmark-json=$R/$1/pytest/train_step.json >> $R/$1.log 2>&1
  echo "$1 rc=$? t=$((SECONDS-S))"; grep -h "triton-adamwcopy" $R/$1/train_step.md 2>/dev/null | head -2
}
if grep -q "'schedule': 'pingpong3'.*'nan': False" $R/probe192.log; then
  bench fwd128a FASTGPT_GLUON_FWD=pingpong 80
  bench fwd192a FASTGPT_GLUON_FWD=pingpong3 80
  bench fwd128b FASTGPT_GLUON_FWD=pingpong 80
  bench fwd192b FASTGPT_GLUON_FWD=pingpong3 80
fi
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
