# Session 27, run 202: kernel timelines of StepDuringBackward's graphed step against the tree's (.run202-profile.py).
set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm,temperature.gpu --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cp benchmarks/.run202-profile.py $R/run202-profile.py
(cd benchmarks && timeout 240 python3 .run202-profile.py > $R/profile.log 2>&1); echo "profile rc=$? t=$((SECONDS-S))"
grep -v Warning $R/profile.log | tail -40
(cd $R && tar czf $OUT/logs.tgz .); rm -rf $R
