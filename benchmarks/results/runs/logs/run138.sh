set -u
export PYTHONUNBUFFERED=1
python3 -c "import fastgpt" 2>/dev/null || FASTGPT_BUILD_CUDA=0 python3 -m pip install --no-deps --no-build-isolation -e . > /dev/null 2>&1
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_graph_memsets.py 2>&1 | tail -3
