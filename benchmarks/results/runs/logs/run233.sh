# Session 30, run 233: one output buffer a consumer, a sixth slot (forward, exp GEMM): GPU tests of the MLP and cross-entropy, the kernels against two buffers, the step's A/B at the cap (.run233-out-buffer.py). The kernel as run: kernels/mlp_gluon.py at 8a6765a with run233_one_out_buffer.diff applied (not kept).
set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm,temperature.gpu --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cp benchmarks/.run233-out-buffer.py $R/
(cd benchmarks && ROUNDS=2 SUSTAIN_S=16 timeout 330 python3 .run233-out-buffer.py > $R/ab.log 2>&1); echo "ab rc=$? t=$((SECONDS-S))"
grep -E '^(CHECK|RESULT)' $R/ab.log; tail -9 $R/ab.log
FASTGPT_AUTOTUNE=0 timeout 240 python3 -m pytest -q -n 8 -p no:cacheprovider tests/test_mlp.py tests/test_cross_entropy.py > $R/gpu-tests.log 2>&1; echo "tests rc=$? t=$((SECONDS-S))"; tail -3 $R/gpu-tests.log
(cd $R && tar czf $OUT/logs.tgz .); rm -rf $R
