# Session 30, run 237: what paces c_fc's forward now (.run237-anatomy.py: no codes, plain, no fill, against the tree and cuBLAS).
set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm,temperature.gpu --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cp benchmarks/.run237-anatomy.py $R/; (cd benchmarks && timeout 240 python3 .run237-anatomy.py > $R/anatomy.log 2>&1); echo "anatomy rc=$? t=$((SECONDS-S))"; grep -E "^(CHECK|RESULT)" $R/anatomy.log || tail -20 $R/anatomy.log
(cd $R && tar czf $OUT/logs.tgz .); rm -rf $R
