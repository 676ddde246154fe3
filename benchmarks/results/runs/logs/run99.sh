set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/env.txt; python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)' >> $R/env.txt; cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
timeout 150 python3 benchmarks/.runS15Q.py > $R/fwd_tiles.log 2>&1; echo "tiles rc=$? t=$((SECONDS-S))"; grep RESULT $R/fwd_tiles.log | sed 's/RESULT //' | cut -c1-160; grep -iE "error|Traceback" $R/fwd_tiles.log | head -3
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
