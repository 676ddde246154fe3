# Session 27, run 207 (prepared in session 27): the add+LayerNorm backward's cost at the power cap (.run207-ab.py).
set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm,temperature.gpu --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cp benchmarks/.run207-ab.py $R/run207-ab.py
(cd benchmarks && ROUNDS=2 SUSTAIN_S=16 timeout 300 python3 .run207-ab.py > $R/ab.log 2>&1); echo "ab rc=$? t=$((SECONDS-S))"
grep -E '^(built|round|tree|ln-)' $R/ab.log || tail -20 $R/ab.log
(cd $R && tar czf $OUT/logs.tgz .); rm -rf $R
