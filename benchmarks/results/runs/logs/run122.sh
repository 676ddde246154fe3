set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cd benchmarks
timeout 150 python3 .run122-timeline.py triton-adamwcopy-cudagraph $R > $R/timeline.log 2>&1; echo "timeline rc=$? t=$((SECONDS-S))"
head -120 $R/timeline.log
timeout 150 python3 .run122-epilogues.py > $R/epilogues.log 2>&1; echo "epi rc=$? t=$((SECONDS-S))"
cat $R/epilogues.log | head -80
cd $R && rm -f trace-*.json && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
