set -u
S=$SECONDS
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'; } > $R/env.txt 2>&1
cat $R/env.txt
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$? t=$((SECONDS-S))"
cp benchmarks/.run181-*.py $R/
cd benchmarks
for c in 16384 8192; do
  CHUNK=$c timeout 150 python3 .run181-breakdown.py triton-adamwcopy-cudagraph $R > $R/breakdown-$c.log 2>&1; echo "chunk $c rc=$? t=$((SECONDS-S))"
done
rm -f $R/trace-*.json
for c in 16384 8192; do
  head -3 $R/breakdown-$c.log | grep -v Warn; awk -F'\t' 'NR>1 && $3>300 {print $1, $2, $3, substr($4,1,60)}' $R/timeline-triton-adamwcopy-cudagraph-$c.tsv | head -8
  grep -E "scale_gradient|scale_rows|exp_logits_finish|splitK" $R/breakdown-$c.log | head
done
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
