# Session 29, run 224: per-tile clocks of the MLP forward's consumers (.run224-clocks.py), run 223's logistic GELU timed.
set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm,temperature.gpu --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cp benchmarks/.run224-clocks.py benchmarks/.run224_timed_*.py $R/
(cd benchmarks && R=$R timeout 400 python3 .run224-clocks.py > $R/clocks.log 2>&1); echo "clocks rc=$? t=$((SECONDS-S))"
grep -E '^(CHECK|RESULT)' $R/clocks.log || tail -30 $R/clocks.log
(cd $R && tar czf $OUT/logs.tgz .); rm -rf $R
