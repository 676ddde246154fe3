# Session 28, run 210: a Triton 3.9 Gluon kernel (2-CTA cluster, TMA multicast) compiled ahead of time here, launched through the driver API on the GPU's Triton 3.6 machine (.run210-launch.py).
set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm,temperature.gpu --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
cp benchmarks/.run210-launch.py $R/run210-launch.py; cp benchmarks/.run210-build.py $R/run210-build.py; cp benchmarks/.run210-aot/kernel.json $R/run210-kernel.json
(cd benchmarks && timeout 120 python3 .run210-launch.py > $R/launch.log 2>&1); echo "launch rc=$? t=$((SECONDS-S))"
cat $R/launch.log | tail -20
(cd $R && tar czf $OUT/logs.tgz .); rm -rf $R
