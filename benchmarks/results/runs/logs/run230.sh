# Session 30, run 230 (prepared in session 29; run as: bash benchmarks/results/runs/logs/run230.sh): the MLP forward's K loop's waits on operand data, stamped, in the tree and with the bias a tile ahead (.run230-kwait.py).
set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm,temperature.gpu --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
# the probe's files, made from this record and the tree (so that the call needs no carry)
L=benchmarks/results/runs/logs
cp $L/run230-kwait.py benchmarks/.run230-kwait.py
python3 $L/run230-make-timed-k.py kernels/mlp_gluon.py benchmarks/.run230_timed_tree.py
cp kernels/mlp_gluon.py benchmarks/.run230_ahead_gluon.py && patch -s benchmarks/.run230_ahead_gluon.py $L/run230_bias_ahead.diff
python3 $L/run230-make-timed-k.py benchmarks/.run230_ahead_gluon.py benchmarks/.run230_timed_ahead.py
cp benchmarks/.run230-kwait.py benchmarks/.run230_*.py $R/
(cd benchmarks && timeout 150 python3 .run230-kwait.py > $R/kwait.log 2>&1); echo "kwait rc=$? t=$((SECONDS-S))"
grep -E '^(CHECK|RESULT)' $R/kwait.log || tail -30 $R/kwait.log
(cd $R && tar czf $OUT/logs.tgz .); rm -rf $R
