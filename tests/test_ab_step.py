"""benchmarks/ab_step.py, the in-process A/B of the graphed step, on the CPU: each variant's patch is
active while (only while) its step is built, the rounds alternate in the variants' order, the A/A
control is built last from the first variant's patch, and the summary's differences are computed
from the rows. Its kernel A/B (compare_kernels) likewise, and on a GPU the replay timer it takes
(benchmarks/timing.replay_timer)."""
import contextlib
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import ab_step  # noqa: E402


def test_variants_build_under_their_patch_and_alternate_with_an_aa_control():
    state = {"patch": None}

    def patch(name):
        @contextlib.contextmanager
        def patched():
            state["patch"] = name
            yield
            state["patch"] = None
        return patched

    built = []        # (config, the patch active while building)

    def build(config):
        built.append((config, state["patch"]))
        index = len(built) - 1
        return lambda: index          # a step that says which build made it

    times = {0: [26.0, 26.2], 1: [25.0, 25.4], 2: [26.1, 26.3]}      # by build, by round
    rounds_seen = {0: 0, 1: 0, 2: 0}

    def timer(step, seconds):
        index = step()
        ms = times[index][rounds_seen[index]]
        rounds_seen[index] += 1
        return {"sustained_ms": ms, "sustained_first_half_ms": ms - 0.1, "power_w": 700.0}

    lines = []
    rows = ab_step.compare([ab_step.Variant("a", patch("pa")), ab_step.Variant("b", patch("pb"))], rounds=2,
                           seconds=1.0, config="cfg", build=build, timer=timer, print_fn=lines.append)
    assert built == [("cfg", "pa"), ("cfg", "pb"), ("cfg", "pa")] and state["patch"] is None
    assert [r["variant"] for r in rows] == ["a", "b", "a (again)"] * 2
    assert rows[1]["joules_per_step"] == pytest.approx(17.5)          # 700 W x 25 ms
    assert "round 0 b: sustained 25.000 ms (first half 24.900), 700 W, 17.50 J/step" in lines
    assert lines[-3:] == ["a: median 26.100 ms (+0.000 against a)", "b: median 25.200 ms (-0.900 against a)",
                          "a (again): median 26.200 ms (+0.100 against a)"]


def test_variant_names_must_differ():
    with pytest.raises(ValueError, match="distinct"):
        ab_step.compare([ab_step.Variant("a"), ab_step.Variant("a")], build=lambda c: None, timer=None)


def test_compare_kernels_alternates_the_order_and_pairs_each_round_with_the_baseline():
    calls = []
    values = {"new": iter([10.0, 12.0, 11.0, 9.0]), "old": iter([12.0, 12.5, 13.0, 12.0])}

    def timer(name):
        def time_once():
            calls.append(name)
            return next(values[name])
        return time_once

    lines = []
    times = ab_step.compare_kernels({"new": timer("new"), "old": timer("old")}, rounds=4, print_fn=lines.append)
    assert calls == ["new", "old", "old", "new", "new", "old", "old", "new"]
    assert times == {"new": [10.0, 12.0, 11.0, 9.0], "old": [12.0, 12.5, 13.0, 12.0]}
    assert lines[0] == "RESULT new    10.0    12.0    11.0     9.0   min 9.0 median 10.5 us"
    assert lines[-1] == "RESULT paired (new - old)   -2.0   -0.5   -2.0   -3.0   median -2.0 us"
    with pytest.raises(ValueError, match="no timer named"):
        ab_step.compare_kernels({"new": timer("new")}, baseline="old")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_replay_timer_times_the_calls_of_one_captured_graph():
    import timing
    x = torch.zeros(1, device="cuda")
    timer = timing.replay_timer(lambda: x.add_(1.0), calls=5, rep_ms=20)
    before = x.item()           # the call before capture and the capture's warm-up ran eagerly
    microseconds = timer()
    replayed = x.item() - before
    assert before == 6.0 and microseconds > 0 and replayed >= 5 and replayed % 5 == 0
