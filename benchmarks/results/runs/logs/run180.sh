set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R/pytest
left() { echo $((585-(SECONDS-S))); }
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__, "gpus", torch.cuda.device_count())'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=1 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
python3 -c "from fastgpt.backend import cuda_extension_available as c; print('cuda ext', c())"
cp benchmarks/.run179-mlp.py $R/
bench() {
  [ $(left) -lt $2 ] && { echo "$1 skipped (time)"; return; }
  FASTGPT_BENCH_OUT=$R/table timeout $2 python3 -m pytest "benchmarks/bench_train_step.py::test_train_step[$1]" --benchmark-only -q \
    -p no:cacheprovider --benchmark-json=$R/pytest/train_step-$1.json >> $R/train_step.log 2>&1
  echo "$1 rc=$? t=$((SECONDS-S))"
}
bench triton-adamwcopy-cudagraph 90
bench reference-compile 90
bench triton-prekept-adamwcopy-cudagraph 60
bench reference-eager 40
bench triton 45
bench triton-compile 100
bench cuda-adamwcopy-cudagraph 45
bench reference-compile-cudagraphs 90
bench triton-tritonmlp-adamwcopy-cudagraph 40
cat $R/table/train_step.md 2>/dev/null
[ $(left) -gt 50 ] && { timeout 45 python3 benchmarks/.run179-mlp.py $PWD/benchmarks/.run179-old_mlp_gluon.py > $R/mlp.log 2>&1; echo "mlp rc=$? t=$((SECONDS-S))"; grep -E "CHECK|RESULT|Error" $R/mlp.log | cut -c1-200; }
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
