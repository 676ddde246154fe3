"""Session 18: a graph of cuBLAS GEMMs (M = 16384: cuBLAS memsets) and a radix sort, replayed with its
memsets rewritten, against eager results (bitwise)."""
import torch
from fastgpt import graph_memsets
torch.manual_seed(0)
a = torch.randn(16384, 768, device="cuda", dtype=torch.bfloat16)
w = torch.randn(768, 768, device="cuda", dtype=torch.bfloat16)
keys = torch.randint(0, 50257, (16384,), device="cuda", dtype=torch.int32)
def work():
    y = a @ w
    z = torch.relu(y) @ w.t()
    s, i = torch.sort(keys, stable=True)
    return z, s, i
ref = work()
st = torch.cuda.Stream(); st.wait_stream(torch.cuda.current_stream())
with torch.cuda.stream(st):
    work()
torch.cuda.current_stream().wait_stream(st)
g = torch.cuda.CUDAGraph(keep_graph=True)
with torch.cuda.graph(g):
    out = work()
n = graph_memsets.rewrite(g.raw_cuda_graph(), 0)
g.instantiate()
for t in out:
    t.fill_(0) if t.dtype != torch.bfloat16 else t.fill_(float("nan"))
g.replay(); torch.cuda.synchronize()
print("rewritten", n, "equal:", [torch.equal(r, o) for r, o in zip(ref, out)])
import statistics
for label, edit in (("rewritten", True), ("as captured", False)):
    g2 = torch.cuda.CUDAGraph(keep_graph=True)
    with torch.cuda.graph(g2):
        for _ in range(20):
            work()
    if edit:
        graph_memsets.rewrite(g2.raw_cuda_graph(), 0)
    g2.instantiate()
    ts = []
    for _ in range(15):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record(); g2.replay(); e1.record(); torch.cuda.synchronize(); ts.append(e0.elapsed_time(e1))
    print(f"{label}: {statistics.median(ts) * 1e3 / 20:.1f} us per work()")
