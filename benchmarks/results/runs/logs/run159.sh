set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; git log --oneline -1; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
FASTGPT_AUTOTUNE=0 timeout 260 python3 -m pytest -q -n 8 -p no:cacheprovider tests/test_attention.py tests/test_cuda_graph.py tests/test_model.py tests/test_train.py tests/test_compile.py > $R/gpu-tests.log 2>&1; echo "tests rc=$? t=$((SECONDS-S))"
tail -2 $R/gpu-tests.log; grep -E "^(FAILED|ERROR)" $R/gpu-tests.log | head -20
for mode in cuda-graph no-cuda-graph; do
  timeout 150 fastgpt-train --preset shakespeare-char --max-iters 1000 --eval-interval 500 --log-interval 100 --sample-tokens 0 --no-progress --seed 1337 --$mode --out-dir $R/o-$mode --metrics-file $R/char-$mode.jsonl > $R/char-$mode.log 2>&1
  echo "char $mode rc=$? t=$((SECONDS-S))"; grep -E "training step|step 1000|final|step 500:" $R/char-$mode.log
done
rm -rf $R/o-*
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
