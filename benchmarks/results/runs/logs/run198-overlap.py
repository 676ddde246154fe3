"""Session 26, run 198: does the AdamW step cost less energy when it runs beside the compute?
Run 197: ~0.95 ms and ~0.6 J a step at the power cap. Three steps of one process, back to back
SUSTAIN_S seconds each, alternating, ROUNDS rounds (timing.sustained):
  tree      the graphed step as committed (AdamW after the backward)
  noadamw   the same step captured without its optimizer step
  overlap   noadamw's graph on a high-priority stream and, launched with it on a low-priority
            stream, a graph of the AdamW step alone (that model's optimizer, its parameter
            copies and the gradients noadamw's graph writes): the update's kernels fill the SMs
            the step's kernels leave. A timing probe only: the two graphs race on the gradients
            and the copies (every value stays finite); semantics would put each layer's update
            before its next forward.

    ROUNDS=2 SUSTAIN_S=16 python .run198-overlap.py  (from benchmarks/)
"""
import os
import sys
import time

import torch

import fastgpt.cuda_graph as cuda_graph
from fastgpt.cuda_graph import GraphedTrainStep
from timing import sustained

TREE_STEP = cuda_graph.step_with_copies


def graphed_of(step) -> GraphedTrainStep:
    """The GraphedTrainStep inside bench_train_step.build's step closure."""
    return next(c.cell_contents for c in step.__closure__ if isinstance(c.cell_contents, GraphedTrainStep))


def main():
    from bench_train_step import CONFIGS, build
    rounds, seconds = int(os.environ.get("ROUNDS", "2")), float(os.environ.get("SUSTAIN_S", "16"))
    steps = {}
    t = time.perf_counter()
    _, steps["tree"] = build(CONFIGS["triton-adamwcopy-cudagraph"])
    cuda_graph.step_with_copies = lambda *args, **kwargs: None
    _, steps["noadamw"] = build(CONFIGS["triton-adamwcopy-cudagraph"])
    for step in steps.values():
        for _ in range(5):
            step()
    cuda_graph.step_with_copies = TREE_STEP
    torch.cuda.synchronize()
    g = graphed_of(steps["noadamw"])
    low, high = torch.cuda.Stream(priority=0), torch.cuda.Stream(priority=-1)
    low.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(low):
        TREE_STEP(g.optimizer, g.copies, 0.0)            # the update's state and tables, outside the capture
    torch.cuda.synchronize()
    adamw_graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(adamw_graph, stream=low):
        TREE_STEP(g.optimizer, g.copies, 0.0)
    torch.cuda.synchronize()

    def overlap():
        start = torch.cuda.Event()
        start.record()
        low.wait_event(start)
        high.wait_event(start)
        with torch.cuda.stream(low):
            adamw_graph.replay()
        with torch.cuda.stream(high):
            steps["noadamw"]()
        current = torch.cuda.current_stream()
        current.wait_stream(low)
        current.wait_stream(high)
    steps["overlap"] = overlap
    for _ in range(5):
        overlap()
    torch.cuda.synchronize()
    print(f"built in {time.perf_counter() - t:.1f} s; AdamW graph alone: "
          f"{sustained(lambda: adamw_graph.replay(), 2.0, 0.5)['sustained_ms']:.3f} ms", flush=True)
    for r in range(rounds):
        for name in ("tree", "noadamw", "overlap"):
            rep = sustained(steps[name], seconds)
            print(f"round {r} {name}: sustained {rep['sustained_ms']:.3f} ms (first half "
                  f"{rep['sustained_first_half_ms']:.3f}), {rep.get('sm_clock_mhz', 0):.0f} MHz, "
                  f"{rep.get('power_w', 0):.0f} W, {rep.get('temperature_c', 0):.0f} C, "
                  f"{rep.get('power_w', float('nan')) * rep['sustained_ms'] / 1000:.2f} J/step", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
