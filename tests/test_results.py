"""benchmarks/results.py, which writes RESULTS.md and the README's tables from the committed run
files: a call that timed configurations on two GPUs at once (rows in gpu<N>/) gets a GPU column,
rows in bench_train_step's order; and the committed README section is what the committed runs give
(so no number in it was typed by hand or left stale)."""
import datetime
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import results  # noqa: E402
from report import replace_section  # noqa: E402


def _row(folder: Path, config: str, ms: float, **extra) -> None:
    """One configuration's row as bench_train_step writes it, with any further fields."""
    folder.mkdir(parents=True, exist_ok=True)
    row = {"config": config, "device": "GPU X", "median_ms": ms, "tokens_per_s": 16384 / (ms * 1e-3),
           "mfu": 0.4, "peak_mem_gib": 7.0, **extra}
    (folder / f"{config}.json").write_text(json.dumps(row))


def _sustained_row(folder: Path, config: str, ms: float, sustained_ms: float, **extra) -> None:
    _row(folder, config, ms, sustained_ms=sustained_ms, sustained_tokens_per_s=16384 / (sustained_ms * 1e-3), **extra)


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


def test_sustained_rate_is_the_second_half_median_with_the_gpu_state_of_that_half():
    """benchmarks/timing.summarize_sustained: the slices and samples of the first half (the GPU
    still warming) are left out of the reported rate and GPU state, and reported apart."""
    import timing
    slices = [(t, ms) for t, ms in zip(range(10), [25.0, 25.2, 25.4, 25.6, 25.8, 26.6, 26.9, 26.7, 26.8, 27.5])]
    samples = [(t / 2, {"sm_clock_mhz": 1980.0 if t < 10 else 1560.0 + t, "power_w": 690.0, "temperature_c": 50.0 + t})
               for t in range(20)]
    report = timing.summarize_sustained(slices, samples, seconds=10.0)
    assert report["sustained_ms"] == 26.8 and report["sustained_first_half_ms"] == 25.4
    assert report["sm_clock_mhz"] == 1574.5 and report["temperature_c"] == 64.5 and report["power_w"] == 690.0
    assert report["sustained_slices"] == 10 and report["sustained_s"] == 10.0


def test_gpu_samples_are_dated_by_their_timestamps():
    """nvidia-smi's lines dated by their own timestamps from the sampler's start (local time, as
    time.time() counts), whatever their count; cut or N/A lines dropped."""
    import timing
    started = datetime.datetime(2026, 11, 27, 5, 0, 0).timestamp()
    lines = ["2026/11/27 05:00:00.350, 1980, 300.5, 40",
             "2026/11/27 05:00:01.600, [N/A], 690.0, 60",
             "2026/11/27 05:00:02.000, 1560, 699.0, 61",
             "2026/11/27 05:00:02.2"]
    rows = timing.dated_samples(lines, started)
    assert [round(t, 3) for t, _ in rows] == [0.35, 2.0]
    assert rows[1][1] == {"sm_clock_mhz": 1560.0, "power_w": 699.0, "temperature_c": 61.0}


def test_gpu_sampler_without_nvidia_smi_samples_nothing(monkeypatch):
    import timing
    monkeypatch.setattr(timing.shutil, "which", lambda name: None)
    with timing.GpuSampler() as sampler:
        pass
    assert sampler.rows == [] and timing.summarize_sustained([(0.0, 30.0)], sampler.rows, 1.0) == {
        "sustained_ms": 30.0, "sustained_first_half_ms": 30.0, "sustained_s": 1.0, "sustained_slices": 1}


def test_rows_with_a_sustained_rate_get_its_columns(tmp_path):
    _sustained_row(tmp_path, "reference-compile", 32.0, 33.0, sm_clock_mhz=1750.0, power_w=697.0, temperature_c=66.0)
    _row(tmp_path, "triton-cudagraph", 26.0)
    lines = results.train_step_table(tmp_path).splitlines()
    assert lines[0].endswith("| peak GiB | sustained ms/step | sustained tokens/s | SM clock MHz, W, C | J/step |")
    assert lines[2].endswith("| 7.00 | 33.00 | 496,485 | 1750, 697, 66 | 23.00 |")     # 697 W x 33 ms
    assert lines[3].endswith("| 7.00 | - | - | - | - |")


def test_pair_ratios_and_sustained_probe_lines_are_computed_from_the_runs(tmp_path):
    ours, ref = results.HEADLINE[0][0], results.HEADLINE[1][0]
    for name, ours_ms in (("runA", 25.0), ("runB", 26.0)):
        _row(tmp_path / name, ours, ours_ms)
        _row(tmp_path / name, ref, 32.0)
    line = results.pair_ratios_line(tmp_path, ["runA", "runB"])
    assert "1.280x (`runA`), 1.231x (`runB`); median 1.255x, 1 of 2 at 1.25x or more" in line
    log = tmp_path / "sustain.log"
    log.write_text("\n".join(
        f"{config} tree: 39 slices of 31 steps; ms/step first third {ms + 0.2:.3f}, last third {ms:.3f} (min 1, max 2); "
        f"last third's SM clock 1600 MHz, power 700 W, temperature 66 C; energy 20 J a step"
        for config, ms in ((ref, 33.0), (ours, 26.4), (ref, 33.4))) + "\nt=85\n")   # a cut run leaves no line
    assert results.sustained_probe_line(log).endswith(f"`{ours}` against `{ref}` sustained: 1.258x\n")


def test_sustained_runs_the_step_back_to_back_in_timed_slices(monkeypatch):
    """benchmarks/timing.sustained on the CPU: CUDA's events and synchronisation stood in for by the
    host clock, a 10 ms "step"; the slices cover the duration and the rate is the step's."""
    import time
    import torch
    import timing

    class HostEvent:
        def __init__(self, enable_timing=False):
            self.at = None

        def record(self):
            self.at = time.perf_counter()

        def synchronize(self):
            pass

        def elapsed_time(self, end):
            return (end.at - self.at) * 1e3

    monkeypatch.setattr(torch.cuda, "Event", HostEvent)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
    monkeypatch.setattr(timing.shutil, "which", lambda name: None)
    calls = []
    report = timing.sustained(lambda: (calls.append(1), time.sleep(0.01)), seconds=0.4, slice_s=0.05)
    assert report["sustained_slices"] >= 4 and len(calls) >= 20
    assert 9.5 <= report["sustained_ms"] <= 30.0 and report["sustained_s"] == 0.4


def test_headline_gives_the_sustained_ratio_where_both_rows_have_it(tmp_path):
    ours, ref = results.HEADLINE[0][0], results.HEADLINE[1][0]
    for config, ms, sustained_ms in ((ours, 25.0, 26.0), (ref, 32.0, 33.0)):
        _sustained_row(tmp_path / "run", config, ms, sustained_ms)
        _row(tmp_path / "plain", config, ms)
    assert f"- `{ours}` against `{ref}`: 1.280x the tokens/s (1.269x sustained), 1.00x the peak memory" in \
        results.headline(tmp_path / "run", tmp_path / "plain")
    assert "sustained" not in results.headline(tmp_path / "plain", tmp_path / "plain")


def test_pair_ratios_lines_add_the_sustained_ratios_of_the_runs_that_measured_them(tmp_path):
    ours, ref = results.HEADLINE[0][0], results.HEADLINE[1][0]
    _row(tmp_path / "old", ours, 25.0)
    _row(tmp_path / "old", ref, 32.0)
    for config, ms, sustained_ms, celsius in ((ours, 25.0, 26.0, 61.0), (ref, 32.0, 32.5, 55.0)):
        _sustained_row(tmp_path / "new", config, ms, sustained_ms, temperature_c=celsius)
    window, sustained = results.pair_ratios_lines(tmp_path, ["old", "new"]).splitlines()
    assert "in 2 timings of the pair: 1.280x (`old`), 1.280x (`new`)" in window
    assert sustained.endswith("in 1 sustained timings of the pair: 1.250x (`new`, 61 C); median 1.250x, 1 of 1 at 1.25x "
                              "or more")
    assert results.pair_ratios_line(tmp_path, ["old"], "sustained_tokens_per_s") == ""


def _plotted_bars(rows: list[dict], tmp_path: Path, monkeypatch) -> list[float]:
    """The heights of plot_train_step's tokens/s bars for these rows (the figure caught before saving)."""
    pytest.importorskip("matplotlib")
    import plot_train_step
    caught = {}
    monkeypatch.setattr(plot_train_step, "save", lambda fig, title, out, **kwargs: caught.update(fig=fig))
    plot_train_step.plot({"benchmarks": [{"name": f"test_train_step[{r['config']}]", "extra_info": r} for r in rows]},
                         tmp_path / "plot.png")
    return [bar.get_height() for bar in caught["fig"].axes[0].patches]


def test_plot_shows_the_sustained_rate_beside_the_window_s(tmp_path, monkeypatch):
    for config, ms, sustained_ms in (("reference-compile", 32.0, 33.0), ("triton-adamwcopy-cudagraph", 25.0, 26.0)):
        _sustained_row(tmp_path, config, ms, sustained_ms)
    rows = [json.loads((tmp_path / f"{c}.json").read_text()) for c in ("reference-compile", "triton-adamwcopy-cudagraph")]
    heights = _plotted_bars(rows, tmp_path, monkeypatch)
    window = [16384 / (ms * 1e-3) / 1e3 for ms in (32.0, 25.0)]
    sustained = [16384 / (ms * 1e-3) / 1e3 for ms in (33.0, 26.0)]
    assert heights == window + sustained
    for row in rows:
        del row["sustained_tokens_per_s"]
    assert _plotted_bars(rows, tmp_path, monkeypatch) == window


def test_bench_rows_rewrite_the_run_s_markdown_table_as_results_renders_it(tmp_path, monkeypatch):
    """bench_train_step.write_row: each configuration's JSON row, and train_step.md rewritten from
    every row so far (results.train_step_table: the same table RESULTS.md shows)."""
    import bench_train_step
    monkeypatch.setenv("FASTGPT_BENCH_OUT", str(tmp_path))
    extra = {"device": "GPU X", "median_ms": 25.0, "tokens_per_s": 16384 / 25e-3, "mfu": 0.5, "peak_mem_gib": 6.7,
             "sustained_ms": 26.0, "sustained_tokens_per_s": 16384 / 26e-3, "power_w": 700.0, "eager_ms": 25.1}
    bench_train_step.write_row("triton-adamwcopy-cudagraph", extra)
    bench_train_step.write_row("reference-compile", {**extra, "median_ms": 32.0, "tokens_per_s": 16384 / 32e-3})
    row = json.loads((tmp_path / "train_step" / "reference-compile.json").read_text())
    assert row["config"] == "reference-compile" and "eager_ms" not in row and row["power_w"] == 700.0
    table = (tmp_path / "train_step.md").read_text()
    assert table == results.train_step_table(tmp_path / "train_step")
    assert [line.split("|")[1].strip() for line in table.splitlines()[2:]] == \
        ["reference-compile", "triton-adamwcopy-cudagraph"]
