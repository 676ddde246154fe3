# Session 28, run 209: the statistics from the producing GEMM or a pass of their own (.run209-producer.py).
set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm,temperature.gpu --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cp benchmarks/.run209-producer.py $R/run209-producer.py; cp benchmarks/.run209_fold_gluon.py $R/run209_fold_gluon.py
(cd benchmarks && timeout 400 python3 .run209-producer.py > $R/producer.log 2>&1); echo "fold rc=$? t=$((SECONDS-S))"
grep -E '^(CHECK|RESULT)' $R/producer.log || tail -30 $R/producer.log
(cd $R && tar czf $OUT/logs.tgz .); rm -rf $R
