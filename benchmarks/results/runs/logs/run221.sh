# Session 28, run 221: which part of the MLP forward epilogue is not hidden (.run221-epilogue.py).
set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm,temperature.gpu --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cp benchmarks/.run221-epilogue.py $R/run221-epilogue.py; cp benchmarks/.run221_anatomy_gluon.py $R/run221_anatomy_gluon.py
(cd benchmarks && timeout 400 python3 .run221-epilogue.py > $R/epilogue.log 2>&1); echo "anatomy rc=$? t=$((SECONDS-S))"
grep -E '^(CHECK|RESULT)' $R/epilogue.log || tail -30 $R/epilogue.log
(cd $R && tar czf $OUT/logs.tgz .); rm -rf $R
