set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R/pytest
left() { echo $((570-(SECONDS-S))); }
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_gemm.py tests/test_linear.py > $R/gpu-tests.log 2>&1; echo "tests rc=$? t=$((SECONDS-S))"; tail -3 $R/gpu-tests.log
timeout 90 python3 benchmarks/.runS17C_choices.py $R/choices.json > $R/choices.log 2>&1; echo "choices rc=$? t=$((SECONDS-S))"; cat $R/choices.log | cut -c1-250
for f in 0 1; do FASTGPT_CUBLASLT=$f timeout 80 python3 benchmarks/host_profile.py --out $R/prof$f --parts kernels --configs triton-adamwcopy-cudagraph > $R/prof$f.log 2>&1; echo "prof$f rc=$? t=$((SECONDS-S))"; head -1 $R/prof$f/kernels-*.md; done
bench() {  # name flag tag timeout
  [ $(left) -lt $4 ] && { echo "$1 $3 skipped (time)"; return; }
  FASTGPT_CUBLASLT=$2 FASTGPT_BENCH_OUT=$R/$3 timeout $4 python3 -m pytest "benchmarks/bench_train_step.py::test_train_step[$1]" --benchmark-only -q \
    -p no:cacheprovider --benchmark-json=$R/pytest/train_step-$1-$3.json >> $R/train_step.log 2>&1
  echo "$1 $3 rc=$? t=$((SECONDS-S))"; tail -1 $R/$3/train_step.md 2>/dev/null
}
for i in a b c; do bench triton-adamwcopy-cudagraph 0 lt0$i 60; bench triton-adamwcopy-cudagraph 1 lt1$i 60; done
python3 - <<'PY' $R/prof0 $R/prof1
import sys, glob, re
def load(d):
    out = {}
    for line in open(glob.glob(d + "/kernels-*.md")[0]):
        m = re.match(r"\| (.+?) \| ([\d.]+) \| (\d+) \|", line)
        if m: out[m.group(1)[:70]] = (float(m.group(2)), int(m.group(3)))
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
for k in sorted(set(a) | set(b), key=lambda k: -max(a.get(k, (0,))[0], b.get(k, (0,))[0])):
    x, y = a.get(k, (0, 0)), b.get(k, (0, 0))
    if max(x[0], y[0]) > 0.05: print(f"{k:70s} {x[0]:7.3f} {x[1]:3d} | {y[0]:7.3f} {y[1]:3d}")
PY
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
