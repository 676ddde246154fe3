"""benchmarks/results.py, which writes RESULTS.md and the README's tables from the committed run
files: a call that timed configurations on two GPUs at once (rows in gpu<N>/) gets a GPU column,
rows in bench_train_step's order; and the committed README section is what the committed runs give
(so no number in it was typed by hand or left stale)."""
import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import results  # noqa: E402
from report import replace_section  # noqa: E402


def _row(folder: Path, config: str, ms: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    row = {"config": config, "device": "GPU X", "median_ms": ms, "tokens_per_s": 16384 / (ms * 1e-3),
           "mfu": 0.4, "peak_mem_gib": 7.0}
    (folder / f"{config}.json").write_text(json.dumps(row))


def test_rows_of_two_gpus_get_a_gpu_column_in_config_order(tmp_path):
    _row(tmp_path / "gpu1", "triton-cudagraph", 30.5)
    _row(tmp_path / "gpu0", "triton-cudagraph", 30.8)
    _row(tmp_path / "gpu0", "reference-compile", 32.0)
    lines = results.train_step_table(tmp_path).splitlines()
    assert lines[0] == "| config | GPU | device | ms/step | tokens/s | MFU | peak GiB |"
    assert [line.split("|")[1:3] for line in lines[2:]] == [
        [" reference-compile ", " 0 "], [" triton-cudagraph ", " 0 "], [" triton-cudagraph ", " 1 "]]


def test_rows_of_one_gpu_have_no_gpu_column(tmp_path):
    _row(tmp_path, "reference-compile", 32.0)
    table = results.train_step_table(tmp_path)
    assert table.splitlines()[0] == "| config | device | ms/step | tokens/s | MFU | peak GiB |"
    assert "| reference-compile | GPU X | 32.00 | 512,000 | 40.0% | 7.00 |" in table


def test_committed_readme_section_is_what_the_runs_give():
    readme = (BENCHMARKS.parent / "README.md").read_text()
    runs = BENCHMARKS / "results" / "runs"
    assert replace_section(readme, "train_step", results.readme_train_step_section(runs)) == readme
    assert replace_section(readme, "ops", results.readme_ops_section(runs)) == readme


def test_op_summary_divides_each_reference_time_by_fastgpt_s(tmp_path, monkeypatch):
    rows = {"test_add_layernorm[triton-fwd]": 0.2, "test_add_layernorm[torch-fwd]": 0.5,
            "test_add_layernorm[compile-fwd]": 0.1}
    data = {"benchmarks": [{"fullname": f"benchmarks/bench_layernorm.py::{name}", "extra_info": {"median_ms": ms}}
                           for name, ms in rows.items()]}
    (tmp_path / "runX-layernorm.json").write_text(json.dumps(data))
    monkeypatch.setattr(results, "OPS_RUN", "runX")
    monkeypatch.setattr(results, "OP_SUMMARY", [("add+LN fwd", "layernorm", "test_add_layernorm[triton-fwd]",
                                                 ["test_add_layernorm[torch-fwd]", "test_add_layernorm[compile-fwd]"])])
    assert results.op_summary_table(tmp_path).splitlines()[2] == \
        "| add+LN fwd | 0.2000 | torch-fwd: 0.5000 (2.50x), compile-fwd: 0.1000 (0.50x) |"


def test_a_benchmark_peak_leaves_out_what_was_allocated_before_it(monkeypatch):
    """benchmarks/timing.peak_memory_gib: a row's peak less the bytes allocated when it began
    (left by the rows before it), and the plain peak where no baseline was recorded."""
    import torch
    import timing
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a, **k: 5 * 2**30)
    assert timing.peak_memory_gib({timing.BASELINE_KEY: 2**30}) == 4.0
    assert timing.peak_memory_gib({}) == 5.0
