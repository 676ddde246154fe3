set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/env.txt; python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)' >> $R/env.txt; cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
timeout 150 python3 benchmarks/.runS15M.py > $R/l2_window.log 2>&1; echo "l2 rc=$? t=$((SECONDS-S))"; cat $R/l2_window.log | cut -c1-300 | tail -12
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
