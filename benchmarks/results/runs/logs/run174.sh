set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cp benchmarks/.run174-step.py $R/
timeout 200 python3 benchmarks/convergence.py --steps 400 --out $R/convergence.json > $R/convergence.log 2>&1; echo "conv rc=$? t=$((SECONDS-S))"; tail -4 $R/convergence.log
cd benchmarks
for i in 1 2 3; do
  for c in 16384 8192; do
    CHUNK=$c timeout 70 python3 .run174-step.py 2>&1 | grep -v Warn | tail -1 | tee -a $R/step.log
  done
done
echo "step t=$((SECONDS-S))"
cd ..
timeout $((580-(SECONDS-S))) python3 -m pytest -q -n 8 -p no:cacheprovider tests/test_mlp.py tests/test_model.py tests/test_train.py tests/test_cuda_graph.py tests/test_autocast.py > $R/gpu-tests.log 2>&1; echo "tests rc=$? t=$((SECONDS-S))"
tail -1 $R/gpu-tests.log; grep -E "^(FAILED|ERROR)" $R/gpu-tests.log | head
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
