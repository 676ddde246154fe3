# Session 30, run 236: the new replay timer's GPU test (tests/test_ab_step.py), run 231's kernel A/B again through the shared helpers (.run236-kernels.py), then the headline pair once more (20 s sustained a configuration), reference first, on a freshly started machine.
set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R/pytest
left() { echo $((585-(SECONDS-S))); }
pack() { (cd $R && tar czf $OUT/logs.tgz .); }
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm,temperature.gpu --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
timeout 120 python3 -m pytest tests/test_ab_step.py -q -p no:cacheprovider > $R/gpu-tests.log 2>&1; echo "tests rc=$? t=$((SECONDS-S))"; tail -2 $R/gpu-tests.log; pack
cp benchmarks/.run236-kernels.py $R/; (cd benchmarks && timeout 120 python3 .run236-kernels.py > $R/kernels.log 2>&1); echo "kernels rc=$? t=$((SECONDS-S))"; grep -E "^(CHECK|RESULT)" $R/kernels.log || tail -20 $R/kernels.log; pack
bench() {
  local config=$1 tag=$2 limit=$3; shift 3
  [ $(left) -lt $limit ] && { echo "$config $tag skipped (time)"; return; }
  env "$@" FASTGPT_BENCH_OUT=$R/table$tag timeout $limit python3 -m pytest "benchmarks/bench_train_step.py::test_train_step[$config]" \
    --benchmark-only -q -p no:cacheprovider --benchmark-json=$R/pytest/train_step-$config-$tag.json >> $R/train_step.log 2>&1
  echo "$config $tag rc=$? t=$((SECONDS-S))"; pack
}
bench reference-compile 4 140 FASTGPT_BENCH_SUSTAIN_S=20
bench triton-adamwcopy-cudagraph 4 130 FASTGPT_BENCH_SUSTAIN_S=20
cat $R/table*/train_step.md 2>/dev/null
pack; rm -rf $R
