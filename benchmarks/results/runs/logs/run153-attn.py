"""Session 20, run 153: attention's two backward kernels side by side on two streams. The dK/dV
kernel computes each query block's Delta = rowsum(dO * O) itself (DELTA_INLINE: an O tile a query
block more), so it need not wait for the dQ kernel's Delta; the two then run concurrently (a
second stream, forked and joined, captured in the CUDA graph). GPT-2's step shape (B 32, H 12,
T 512, D 64, packed bf16 qkv views, c_attn's bias partials), autotuned, CUDA-graph replays of 10
calls (do_bench median, 3 rounds, twice)."""
import torch, triton, triton.testing
from fastgpt.kernels import attention as A

B, T, H, D = 32, 512, 12, 64
torch.manual_seed(0)
qkv = torch.randn(B, T, 3, H, D, device="cuda", dtype=torch.bfloat16)
q, k, v = A.qkv_views(qkv)
scale = D ** -0.5
out, lse = A.attention_qkvpacked_fwd(qkv, True, scale)
dout = torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16)
do, o = dout.transpose(1, 2), out.transpose(1, 2)
dq_, delta = A.attention_bwd_dq(do, q, k, v, o, lse, True, scale)
g = {m: torch.empty_like(qkv) for m in ("seq", "conc")}
part = {m: A.bias_grad_partials(q) for m in ("seq", "conc")}
gq, gk, gv = A.qkv_views(g["seq"])
side = torch.cuda.Stream()


def seq():
    A.attention_bwd(do, q, k, v, o, lse, True, scale, grads=A.qkv_views(g["seq"]), partials=part["seq"])


def conc(dkdv_first=True):
    def run():
        cq, ck, cv = A.qkv_views(g["conc"])
        main = torch.cuda.current_stream()
        side.wait_stream(main)
        if not dkdv_first:
            A.attention_bwd_dq(do, q, k, v, o, lse, True, scale, dq=cq, partials=part["conc"])
        with torch.cuda.stream(side):
            A.attention_bwd_dkdv(do, q, k, v, lse, None, True, scale, dk=ck, dv=cv, out=o)
        if dkdv_first:
            A.attention_bwd_dq(do, q, k, v, o, lse, True, scale, dq=cq, partials=part["conc"])
        main.wait_stream(side)
    return run


parts = {
    "dQ (+Delta, partials)": lambda: A.attention_bwd_dq(do, q, k, v, o, lse, True, scale, dq=gq, partials=part["seq"]),
    "dK/dV (Delta read)": lambda: A.attention_bwd_dkdv(do, q, k, v, lse, delta, True, scale, dk=gk, dv=gv),
    "dK/dV (Delta inline)": lambda: A.attention_bwd_dkdv(do, q, k, v, lse, None, True, scale, dk=gk, dv=gv, out=o),
}


def graph_us(fn, reps=10):
    fn(); torch.cuda.synchronize()
    gr = torch.cuda.CUDAGraph()
    with torch.cuda.graph(gr):
        for _ in range(reps):
            fn()
    return [round(triton.testing.do_bench(gr.replay, warmup=30, rep=300, return_mode="median") / reps * 1000, 1)
            for _ in range(3)]


seq(); conc()(); torch.cuda.synchronize()
print("d(qkv) concurrent == sequential:", torch.equal(g["seq"], g["conc"]),
      "| partials equal:", torch.equal(part["seq"], part["conc"]))
for rnd in range(2):
    print(f"sequential (dQ then dK/dV)      us a call: {graph_us(seq)}", flush=True)
    print(f"concurrent (dK/dV first issued) us a call: {graph_us(conc(True))}", flush=True)
    print(f"concurrent (dQ first issued)    us a call: {graph_us(conc(False))}", flush=True)
    for name, fn in parts.items():
        print(f"  {name:24s} us a call: {graph_us(fn)}", flush=True)
print("tiles: dq", A._attention_bwd_dq_kernel.best_config, "| dkdv", A._attention_bwd_dkdv_kernel.cache)
