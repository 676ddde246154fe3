"""Session 18: the step's GEMM problems, every candidate timed two ways (kernels/gemm's eager events,
and replayed in a CUDA graph of REPS calls, as the step runs them), and whether it memsets."""
import json, statistics, sys
import torch
from torch.profiler import profile, ProfilerActivity
from bench_train_step import CONFIGS, build
from fastgpt.kernels import gemm as G
REPS = 10
model, step = build(CONFIGS["triton-adamwcopy-cudagraph"])
for _ in range(3):
    step()
torch.cuda.synchronize()
lt = G._state.library()

def operand(shape, stride, dtype):
    if stride[1] == 1:
        return torch.randn(shape[0], stride[0], device="cuda", dtype=dtype)[:, :shape[1]]
    return torch.randn(shape[1], stride[1], device="cuda", dtype=dtype)[:, :shape[0]].t()

def graph_of(fn):
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g, capture_error_mode="thread_local"):
        for _ in range(REPS):
            fn()
    return g

def graph_times(graphs, rounds=7):
    ev = {k: [] for k in graphs}
    for g in graphs.values():
        g.replay()
    torch.cuda.synchronize()
    for _ in range(rounds):
        torch.cuda._sleep(2_000_000)
        for k, g in graphs.items():
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record(); g.replay(); b.record(); ev[k].append((a, b))
    torch.cuda.synchronize()
    return {k: statistics.median(a.elapsed_time(b) for a, b in v) * 1e3 / REPS for k, v in ev.items()}

def memsets(fn):
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn(); torch.cuda.synchronize()
    return sum(1 for e in prof.events() if "Memset" in e.name)

out_rows = []
for key, problem in list(G._state.problems.items()):
    dev, a_shape, a_stride, b_shape, b_stride, dtype, out_dtype, out_strides, has_bias, beta, align = key
    a, b = operand(a_shape, a_stride, dtype), operand(b_shape, b_stride, dtype)
    out = torch.randn(a_shape[0], b_shape[1], device="cuda", dtype=out_dtype)
    bias = torch.randn(b_shape[1], device="cuda", dtype=out_dtype) if has_bias else None
    fns = {-1: lambda: G._torch_matmul(a, b, bias, out, beta, out_dtype)}
    ws = torch.empty(max(problem.workspace_sizes, default=0) + 1, dtype=torch.uint8, device="cuda")
    for i in range(len(problem.algos)):
        fns[i] = (lambda i: lambda: G._run_algo(lt, problem, i, a, b, bias, out, beta, ws))(i)
    eager = G._median_times(fns)
    graphs = {k: graph_of(fn) for k, fn in fns.items()}
    gt = graph_times(graphs)
    ms = {k: memsets(fn) for k, fn in fns.items()}
    name = f"M{a_shape[0]} K{a_shape[1]} N{b_shape[1]} {str(out_dtype)[6:]} bias={int(has_bias)} beta={beta} a{a_stride} b{b_stride}"
    best_e = min(eager, key=eager.get); best_g = min(gt, key=gt.get)
    print(f"{name}: chosen {problem.choice}, eager-best {best_e}, graph-best {best_g}")
    for k in sorted(gt, key=gt.get):
        print(f"    {k:3d} graph {gt[k]:7.1f} us  eager {eager[k]*1e3:7.1f} us  memsets {ms[k]}")
    out_rows.append(dict(problem=name, choice=problem.choice, graph=gt, eager={k: v * 1e3 for k, v in eager.items()}, memsets=ms))
    del graphs
json.dump(out_rows, open(sys.argv[1] if len(sys.argv) > 1 else "/tmp/graphtime.json", "w"), indent=1)
