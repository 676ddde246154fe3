set -u
export PYTHONUNBUFFERED=1
python3 -c "import fastgpt" 2>/dev/null || FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > /dev/null 2>&1
FASTGPT_AUTOTUNE=0 timeout 120 python3 benchmarks/.run137-count.py 2>&1 | grep -v Warn | tail -3
