"""benchmarks/scaling.py's pieces on CPU: a run launched as one process and as a 2-rank torchrun
job (gloo) comes back as its metrics records and summary, tokens/s is the median after the first
log interval, and the table names every run. The measurement itself needs GPUs
(python benchmarks/scaling.py --gpus 2; results in benchmarks/results/runs/run19-scaling/)."""
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import scaling  # noqa: E402

from test_train import CORPUS, tiny_flags  # noqa: E402


def run_flags(tmp_path, name):
    """A tiny CPU run as fastgpt-train flags, its metrics in tmp_path/name.jsonl."""
    return tiny_flags(tmp_path, CORPUS, max_iters=6, eval_interval=6, log_interval=2, sample_tokens=0,
                      device="cpu", metrics_file=tmp_path / f"{name}.jsonl", out_dir=tmp_path / name)


@pytest.mark.parametrize("ranks", [1, 2])
def test_launch_returns_the_runs_records_and_summary(tmp_path, ranks):
    (tmp_path / "logs").mkdir()
    run = scaling.launch(f"{ranks}cpu", ranks, run_flags(tmp_path, f"{ranks}cpu"), tmp_path, timeout=240)
    assert [r["step"] for r in run["records"]] == [2, 4, 6]
    summary = run["summary"]
    assert summary["world_size"] == ranks and sorted(map(int, summary["losses"])) == list(range(1, 7))
    assert summary["step_kind"] == ("eager DDP" if ranks == 2 else "eager")
    assert scaling.tokens_per_second(run) > 0
    assert (tmp_path / "logs" / f"{ranks}cpu.log").read_text().count("step 6/6") == 1


def test_a_failed_run_is_an_error_naming_its_log(tmp_path):
    (tmp_path / "logs").mkdir()
    flags = run_flags(tmp_path, "bad") + ["--batch-size", "0"]
    with pytest.raises(RuntimeError, match="bad failed .*logs/bad.log"):
        scaling.launch("bad", 1, flags, tmp_path, timeout=120)


def test_tokens_per_second_leaves_the_first_interval_out():
    run = {"records": [{"tokens_per_s": 1.0}, {"tokens_per_s": 10.0}, {"tokens_per_s": 30.0},
                       {"tokens_per_s": 20.0}]}
    assert scaling.tokens_per_second(run) == 20.0


def test_table_has_every_run_and_the_loss_verdict():
    row = dict(gpus=1, step="CUDA-graphed", tokens_per_s=5e5, tokens_per_s_per_gpu=5e5, ms_per_step=32.0,
               mfu=0.4, scaling_efficiency=1.0, peak_memory_gib_per_rank=[7.0], final_val_loss=4.8)
    result = {"rows": [dict(row, run="1gpu"), dict(row, run="2gpu", gpus=2, tokens_per_s=9.4e5,
                                                    scaling_efficiency=0.94, peak_memory_gib_per_rank=[7.0, 7.0])],
              "args": {"gpus": "2", "smooth": "20", "tolerance": "0.05"},
              "max_smoothed_loss_difference": {"global-batch": 0.05, "global-batch-accumulated": 0.04},
              "regrouping_noise": 0.07, "loss_bound": 0.14, "loss_curves_match": True,
              "max_loss_difference_first_10_steps": 0.0003}
    table = scaling.scaling_table(result)
    assert "| 2gpu | 2 | CUDA-graphed | 940,000 |" in table and "94.0%" in table and "7.00, 7.00" in table
    assert "PASS" in table and "0.1400" in table
