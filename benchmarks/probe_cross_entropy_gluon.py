"""Is the persistent, double-buffered Gluon loss kernel (kernels/cross_entropy_gluon.py) faster than
the Triton single pass (kernels/cross_entropy.py) at the GPT-2 step's chunk?

At (4096, 50304) bf16 logits with random targets (a few ignored): checks each kernel's first call
against float64 (max abs error of the per-row loss and of the gradient, and their relative errors),
then times the Triton kernel, the Gluon kernel at 8 and 16 warps, and a plain copy of the logits
(one read + one write of 412 MB: the memory floor this kernel can approach) with
triton.testing.do_bench (median). The kernels are timed in place, call after call: from the second
call on they read the previous call's gradient instead of logits (the same bytes and the same
arithmetic; the values do not change the time).

    python benchmarks/probe_cross_entropy_gluon.py      # writes $OUT/ce_gluon_probe.json (or /tmp)
"""
import json, os, sys, traceback
import torch, triton
import torch.nn.functional as F
from triton.testing import do_bench
from fastgpt.kernels import cross_entropy_gluon as G
from fastgpt.kernels.cross_entropy import cross_entropy_fwd_bwd_
from fastgpt.testing import rel_error

torch.manual_seed(0)
dev = "cuda"
print(torch.cuda.get_device_name(), torch.__version__, triton.__version__, "gluon", G.HAVE_GLUON, G.available(), flush=True)
ROWS, V = 4096, 50304
g = torch.Generator().manual_seed(0)
logits0 = (torch.randn(ROWS, V, generator=g) * 4).to(dev, torch.bfloat16)
targets = torch.randint(0, V, (ROWS,), generator=g).to(dev)
targets[::509] = -1
n_valid = (targets != -1).sum()
bytes_moved = 2 * logits0.numel() * logits0.element_size()

ref_logits = logits0.double().requires_grad_()
ref_loss = F.cross_entropy(ref_logits, targets, ignore_index=-1, reduction="none")
(ref_loss.sum() / n_valid).backward()
ref_grad = ref_logits.grad
del ref_logits

VARIANTS = [("triton single pass (kernel='triton')", dict(kernel="triton")),
            ("gluon num_warps=8", dict(kernel="gluon", num_warps=8)),
            ("gluon num_warps=16", dict(kernel="gluon", num_warps=16)),
            ("default dispatch (kernel=None)", dict())]
checks, rows = [], []
for name, kw in VARIANTS:
    try:
        logits = logits0.clone()
        loss = torch.full((ROWS,), float("nan"), device=dev)
        cross_entropy_fwd_bwd_(logits, targets, loss, n_valid, -1, True, **kw)
        torch.cuda.synchronize()
        c = dict(name=name, loss_max_abs=(loss.double() - ref_loss).abs().max().item(),
                 grad_max_abs=(logits.double() - ref_grad).abs().max().item(),
                 loss_rel=rel_error(loss, ref_loss), grad_rel=rel_error(logits, ref_grad),
                 ignored_zero=bool(torch.count_nonzero(logits[::509]) == 0))
        c["ok"] = c["loss_rel"] <= 1e-6 and c["grad_rel"] <= 2 ** -8 and c["ignored_zero"]
        checks.append(c)
        print(f"check {name:40s} loss max abs {c['loss_max_abs']:.2e} rel {c['loss_rel']:.2e}  "
              f"grad max abs {c['grad_max_abs']:.2e} rel {c['grad_rel']:.2e}  {'OK' if c['ok'] else 'FAIL'}", flush=True)
        ms = do_bench(lambda: cross_entropy_fwd_bwd_(logits, targets, loss, n_valid, -1, True, **kw),
                      warmup=50, rep=500, return_mode="median")
        rows.append(dict(name=name, ms=ms, tb_s=bytes_moved / ms / 1e9))
        print(f"{name:40s} {ms*1e3:8.1f} us {bytes_moved / ms / 1e9:6.2f} TB/s", flush=True)
    except Exception:
        traceback.print_exc()
        checks.append(dict(name=name, ok=False, error=traceback.format_exc()[-800:]))

src, dst = logits0, torch.empty_like(logits0)
ms = do_bench(lambda: dst.copy_(src), warmup=50, rep=500, return_mode="median")
rows.append(dict(name="copy of the logits (memory floor)", ms=ms, tb_s=bytes_moved / ms / 1e9))

out = os.environ.get("OUT", "/tmp")
json.dump(dict(device=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
               command=" ".join([sys.executable] + sys.argv), shape=[ROWS, V], dtype="bfloat16",
               checks=checks, rows=rows), open(f"{out}/ce_gluon_probe.json", "w"), indent=1, default=str)
print("| variant | us per 4096-row chunk | TB/s (read + write) |\n|---|---|---|")
for r in rows:
    print(f"| {r['name']} | {r['ms']*1e3:.1f} | {r['tb_s']:.2f} |")
