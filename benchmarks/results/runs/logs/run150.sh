set -u
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
nvidia-smi --query-gpu=name --format=csv,noheader
FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > $R/install.log 2>&1; echo "install rc=$?"
timeout 240 python3 benchmarks/.run150-dkdv.py 2>&1 | grep -v Warn | tee $R/dkdv.log
cd $R && tar czf $OUT/logs.tgz . && cd $OUT && rm -rf $R
