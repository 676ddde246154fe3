set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
timeout 500 python3 benchmarks/convergence.py --steps 400 --out $R/convergence.json > $R/convergence.log 2>&1; echo "conv rc=$? t=$((SECONDS-S))"; tail -3 $R/convergence.log
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
