# Session 30, run 238: the forward's variants (run 237's files) replayed back to back, 8 s each: time, SM clock, power, energy a call (.run238-power.py).
set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm,temperature.gpu --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cp benchmarks/.run238-power.py $R/; (cd benchmarks && timeout 240 python3 .run238-power.py > $R/power.log 2>&1); echo "power rc=$? t=$((SECONDS-S))"; grep -E "^(CHECK|RESULT)" $R/power.log || tail -20 $R/power.log
(cd $R && tar czf $OUT/logs.tgz .); rm -rf $R
