# Session 28, run 222: the MLP forward epilogue's own length, K = 64 (.run222-epilogue-k64.py).
set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm,temperature.gpu --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cp benchmarks/.run222-epilogue-k64.py $R/run222-epilogue-k64.py; cp benchmarks/.run221_anatomy_gluon.py $R/run221_anatomy_gluon.py
(cd benchmarks && timeout 400 python3 .run222-epilogue-k64.py > $R/k64.log 2>&1); echo "anatomy rc=$? t=$((SECONDS-S))"
grep -E '^(CHECK|RESULT)' $R/k64.log || tail -30 $R/k64.log
(cd $R && tar czf $OUT/logs.tgz .); rm -rf $R
