set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/env.txt; python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)' >> $R/env.txt; cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
for d in 0 1 2 5 6 0 5 6; do
  FASTGPT_GLUON_DIAG=$d TRITON_CACHE_DIR=/tmp/tc$d timeout 90 python3 benchmarks/.runS15B.py >> $R/gluon_diag.log 2>&1; echo "diag $d rc=$? t=$((SECONDS-S))"
done
grep RESULT $R/gluon_diag.log; grep -iE "error|Traceback" $R/gluon_diag.log | head -5 | cut -c1-300
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
