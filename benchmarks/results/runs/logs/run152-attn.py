"""Session 20, run 152: attention's backward at GPT-2's step shape (B 32, H 12, T 512, D 64, packed
bf16 qkv views, with c_attn's bias partials as in the step), the two schedules side by side:
"recompute" (dQ kernel with Delta, then dK/dV) against "stored_ds" (Delta kernel, dK/dV storing
dS^T, dQ = dS K read back). Each autotuned, then replayed in CUDA graphs of 10 calls (do_bench
median, 3 rounds, twice); and the two schedules' gradients against each other."""
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
dqkv = {s: torch.empty_like(qkv) for s in A.BWD_SCHEDULES}
part = {s: A.bias_grad_partials(q) for s in A.BWD_SCHEDULES}
ds = A.ds_buffer(q)
delta = A.attention_bwd_preprocess(do, o, part["stored_ds"])
gq, gk, gv = A.qkv_views(dqkv["stored_ds"])


def whole(schedule):
    return lambda: A.attention_bwd(do, q, k, v, o, lse, True, scale, grads=A.qkv_views(dqkv[schedule]),
                                   partials=part[schedule], schedule=schedule)


parts = {
    "recompute: dQ (+Delta)": lambda: A.attention_bwd_dq(do, q, k, v, o, lse, True, scale, dq=gq, partials=part["recompute"]),
    "recompute: dK/dV": lambda: A.attention_bwd_dkdv(do, q, k, v, lse, delta, True, scale, dk=gk, dv=gv),
    "stored_ds: Delta": lambda: A.attention_bwd_preprocess(do, o, part["stored_ds"]),
    "stored_ds: dK/dV + dS": lambda: A.attention_bwd_dkdv(do, q, k, v, lse, delta, True, scale, dk=gk, dv=gv, ds=ds),
    "stored_ds: dQ from dS": lambda: A.attention_bwd_dq_from_ds(ds, k, True, scale, dq=gq, partials=part["stored_ds"]),
}


def graph_us(fn, reps=10):
    fn(); torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(reps):
            fn()
    return [round(triton.testing.do_bench(g.replay, warmup=30, rep=300, return_mode="median") / reps * 1000, 1)
            for _ in range(3)]


for s in A.BWD_SCHEDULES:
    whole(s)()
torch.cuda.synchronize()
a, b = dqkv["recompute"].float(), dqkv["stored_ds"].float()
print(f"d(qkv) stored_ds vs recompute: rel err {float((a - b).norm() / a.norm()):.2e}, "
      f"max abs {float((a - b).abs().max()):.2e}; bias partial sums rel err "
      f"{float((part['recompute'].sum((0, 1)) - part['stored_ds'].sum((0, 1))).norm() / part['recompute'].sum((0, 1)).norm()):.2e}")
for rnd in range(2):
    for s in A.BWD_SCHEDULES:
        print(f"whole backward {s:10s} us a call: {graph_us(whole(s))}", flush=True)
    for name, fn in parts.items():
        print(f"  {name:26s} us a call: {graph_us(fn)}", flush=True)
print("tiles: dq", A._attention_bwd_dq_kernel.best_config, "| dkdv", A._attention_bwd_dkdv_kernel.best_config,
      "| dq_from_ds", A._attention_bwd_dq_from_ds_kernel.best_config)
print(f"peak {torch.cuda.max_memory_allocated() / 2**30:.3f} GiB")
