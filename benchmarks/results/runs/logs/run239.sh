# Session 30, run 239: the MLP backward with its weight K-major (B_NK) against the tree's (K, N) (.run239-bnk.py).
set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm,temperature.gpu --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cp benchmarks/.run239-bnk.py $R/; (cd benchmarks && timeout 240 python3 .run239-bnk.py > $R/bnk.log 2>&1); echo "bnk rc=$? t=$((SECONDS-S))"; grep -E "^(CHECK|RESULT)" $R/bnk.log || tail -20 $R/bnk.log
(cd $R && tar czf $OUT/logs.tgz .); rm -rf $R
