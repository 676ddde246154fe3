set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
echo "tests ran in the call before"
cd benchmarks
timeout 45 python3 .run171-attn.py ref 2>&1 | grep -v Warn | tee -a $R/attn.log | grep -E "RESULT|CHECK|Error"
timeout 60 python3 .run171-attn.py 2>&1 | grep -v Warn | tee -a $R/attn.log | grep -E "RESULT|CHECK|Error"
echo "t=$((SECONDS-S))"
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
