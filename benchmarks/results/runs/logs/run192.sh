set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
left() { echo $((585-(SECONDS-S))); }
pack() { (cd $R && tar czf $OUT/logs.tgz .); }
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm,temperature.gpu --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cp benchmarks/.run192-*.py $R/
cd benchmarks
one() {
  [ $(left) -lt $3 ] && { echo "$1 $2 skipped (time)"; return; }
  CONFIG=$1 MODE=$2 DURATION_S=40 SAMPLES=$R/samples.txt timeout $3 python3 .run192-sustain.py 2>&1 | grep -v Warn | tail -1 | tee -a $R/sustain.log
  echo "t=$((SECONDS-S))"; pack
}
one triton-adamwcopy-cudagraph tree 75
one reference-compile tree 110
one triton-adamwcopy-cudagraph coop 75
one triton-adamwcopy-cudagraph tree 75
one reference-compile tree 110
one triton-adamwcopy-cudagraph coop 75
pack; rm -rf $R
