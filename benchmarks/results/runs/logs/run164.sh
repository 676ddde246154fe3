set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=1 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
timeout 90 python3 -m pytest benchmarks/bench_linear.py -k bias_grad --benchmark-only -q -p no:cacheprovider --benchmark-json=$R/linear-bias_grad.json > $R/bench_linear.log 2>&1; echo "bench rc=$? t=$((SECONDS-S))"; tail -1 $R/bench_linear.log
timeout 200 python3 benchmarks/convergence.py --steps 400 --out $R/convergence.json > $R/convergence.log 2>&1; echo "conv rc=$? t=$((SECONDS-S))"; tail -3 $R/convergence.log
FASTGPT_AUTOTUNE=0 timeout $((575-(SECONDS-S))) python3 -m pytest -q -n 8 -p no:cacheprovider tests > $R/gpu-tests.log 2>&1; echo "tests rc=$? t=$((SECONDS-S))"
tail -2 $R/gpu-tests.log; grep -E "^(FAILED|ERROR)" $R/gpu-tests.log | head -20
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
