"""Session 30, run 237: what paces c_fc's forward (16384 x 768 -> 3072, codes) now that its epilogue's
halves run apart (run 231), against run 213's anatomy of the kernel before (tree 159.4 us, one plain
output 127.5, cuBLAS 128.1). Variants made from kernels/mlp_gluon.py's text (files .run237_*.py):
  no codes        h = gelu(acc) stored, the codes neither computed nor stored (one output)
  plain           h = acc stored (bias added, no GELU, no codes): run 213's PLAIN
  no fill         the tree, but no operand loads after the slot ring's first lap (stale operands)
  plain, no fill  both
timed as CUDA-graph replays, eight rounds alternating (timing.replay_timer, ab_step.compare_kernels),
against the tree, and cuBLAS's x @ w^T + b (torch.addmm) beside them. Prediction (run 233: the K
loop's waits are not for slots): plain ~125-130 (cuBLAS's time), no codes 140-145 (the second
output's stores), no fill ~130-135 if operand delivery paces the tree.

    python .run237-anatomy.py  (from benchmarks/)
"""
import importlib.util
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from ab_step import compare_kernels  # noqa: E402
from fastgpt.kernels import mlp_gluon as tree  # noqa: E402
from timing import replay_timer  # noqa: E402

CODE_STORE = "                    _store_tile(aux_desc, _code_buffer(c_bufs.index(2 * WHICH), aux_desc), code, row, off_n, 1)\n"
GELU_CODE = "                    gelu, code = _gelu_grad_code(acc)\n"
FILL = """                mbarrier.expect(ready.index(s), a_desc.block_type.nbytes + b_desc.block_type.nbytes)
                tma.async_copy_global_to_shared(a_desc, [pid_m * BM, k * BK], ready.index(s), a_bufs.index(s))
                if B_NK:
                    tma.async_copy_global_to_shared(b_desc, [pid_n * BN, k * BK], ready.index(s), b_bufs.index(s))
                else:
                    tma.async_copy_global_to_shared(b_desc, [k * BK, pid_n * BN], ready.index(s), b_bufs.index(s))
"""
NO_FILL = """                if count >= NUM_STAGES:     # stale operands: the slot's data from the ring's first lap
                    mbarrier.arrive(ready.index(s))
                else:
                    mbarrier.expect(ready.index(s), a_desc.block_type.nbytes + b_desc.block_type.nbytes)
                    tma.async_copy_global_to_shared(a_desc, [pid_m * BM, k * BK], ready.index(s), a_bufs.index(s))
                    if B_NK:
                        tma.async_copy_global_to_shared(b_desc, [pid_n * BN, k * BK], ready.index(s), b_bufs.index(s))
                    else:
                        tma.async_copy_global_to_shared(b_desc, [k * BK, pid_n * BN], ready.index(s), b_bufs.index(s))
"""
EDITS = {"no codes": [(CODE_STORE, "")],
         "plain": [(CODE_STORE, ""), (GELU_CODE, "                    gelu = acc\n")],
         "no fill": [(FILL, NO_FILL)],
         "plain, no fill": [(CODE_STORE, ""), (GELU_CODE, "                    gelu = acc\n"), (FILL, NO_FILL)]}
source = open(tree.__file__).read()
variants = {}
for name, edits in EDITS.items():
    text = source
    for old, new in edits:
        assert text.count(old) == 1, (name, old)
        text = text.replace(old, new)
    path = os.path.join(HERE, f".run237_{name.replace(', ', '_').replace(' ', '_')}.py")
    open(path, "w").write(text)
    spec = importlib.util.spec_from_file_location(f"run237_{len(variants)}", path)
    variants[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(variants[name])

bf, dev = torch.bfloat16, "cuda"
torch.manual_seed(0)
M, C, H = 16384, 768, 3072
x = torch.randn(M, C, device=dev, dtype=bf)
w = (torch.randn(H, C, device=dev) * C ** -0.5).to(bf)
b = (torch.randn(H, device=dev) * 0.5).to(bf)
h_tree, c_tree = torch.empty(M, H, device=dev, dtype=bf), torch.empty(M, H, device=dev, dtype=torch.uint8)
outs = {name: (torch.full((M, H), float("nan"), device=dev, dtype=bf), torch.full((M, H), 255, device=dev, dtype=torch.uint8))
        for name in variants}
h_ref = torch.empty(M, H, device=dev, dtype=bf)
calls = {name: (lambda mod=mod, o=outs[name]: mod.launch_linear_gelu(x, w, b, o[0], o[1])) for name, mod in variants.items()}
calls["cuBLAS addmm"] = lambda: torch.addmm(b, x, w.t(), out=h_ref)
calls["tree"] = lambda: tree.launch_linear_gelu(x, w, b, h_tree, c_tree)
timers = {name: replay_timer(fn) for name, fn in calls.items()}
torch.cuda.synchronize()
print(f"CHECK no codes: h equal to the tree's {bool(torch.equal(outs['no codes'][0], h_tree))}, codes unwritten "
      f"{bool((outs['no codes'][1] == 255).all())}; plain: h equal to addmm's to 1 bf16 ulp "
      f"{bool(torch.allclose(outs['plain'][0].float(), h_ref.float(), rtol=2**-7, atol=0))}", flush=True)
compare_kernels(timers, rounds=8, baseline="tree", print_fn=lambda line: print(line, flush=True))
