# Session 29, run 223: the SFU rates (.run223-sfu.py); the MLP forward with the logistic GELU (.run223-sigmoid.py).
set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm,temperature.gpu --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cp benchmarks/.run223-sfu.py benchmarks/.run223-sigmoid.py benchmarks/.run223_sig_gluon.py $R/
(cd benchmarks && timeout 120 python3 .run223-sfu.py > $R/sfu.log 2>&1); echo "sfu rc=$? t=$((SECONDS-S))"
grep -E '^(op|RESULT)' $R/sfu.log || tail -30 $R/sfu.log
(cd benchmarks && timeout 300 python3 .run223-sigmoid.py > $R/sigmoid.log 2>&1); echo "sigmoid rc=$? t=$((SECONDS-S))"
grep -E '^(CHECK|RESULT)' $R/sigmoid.log || tail -30 $R/sigmoid.log
(cd $R && tar czf $OUT/logs.tgz .); rm -rf $R
