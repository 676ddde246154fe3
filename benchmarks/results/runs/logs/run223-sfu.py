"""Session 29, run 223, part 1: the SFU's rate for each instruction the Gluon epilogues use.

Run 222 timed the MLP forward's epilogue at ~64 cycles an element a thread for ~15 instructions.
If tanh.approx.f32 (MUFU.TANH) ran at a quarter of ex2's rate (4 a clock an SM instead of 16), the
tanh alone would set that: 2 tiles x 16384 / 4 = 8192 cycles, ~4.8 us at 1.7 GHz. Prediction: tanh
at 16 a clock an SM like ex2 and rcp (then the tanh is not the epilogue's bound).

Each program keeps 8 independent chains a thread, 16 ops an iteration unrolled; 16 programs an SM.
Rates reported as ops a clock an SM, the clock taken from the FFMA kernel's rate at 128 a clock an
SM (the FP32 pipe's width), and as raw Gop/s."""
import torch
import triton
import triton.language as tl
import triton.testing


@triton.jit
def _asm1(x, OP: tl.constexpr):
    if OP == "tanh":
        return tl.inline_asm_elementwise("tanh.approx.f32 $0, $1;", "=f,f", [x], dtype=tl.float32, is_pure=True, pack=1)
    elif OP == "ex2":
        return tl.inline_asm_elementwise("ex2.approx.ftz.f32 $0, $1;", "=f,f", [-x], dtype=tl.float32, is_pure=True,
                                         pack=1)
    elif OP == "rcp":
        return tl.inline_asm_elementwise("rcp.approx.ftz.f32 $0, $1;", "=f,f", [x], dtype=tl.float32, is_pure=True,
                                         pack=1)
    elif OP == "ex2rcp":    # the logistic 1 / (1 + 2^-x): two SFU ops and an FADD
        e = tl.inline_asm_elementwise("ex2.approx.ftz.f32 $0, $1;", "=f,f", [-x], dtype=tl.float32, is_pure=True,
                                      pack=1)
        return tl.inline_asm_elementwise("rcp.approx.ftz.f32 $0, $1;", "=f,f", [1.0 + e], dtype=tl.float32,
                                         is_pure=True, pack=1)
    elif OP == "tanh_f16":
        return tl.inline_asm_elementwise("tanh.approx.f16 $0, $1;", "=h,h", [x], dtype=tl.float16, is_pure=True,
                                         pack=1)
    else:   # ffma
        return x * 0.999 + 0.001


@triton.jit
def _sfu_kernel(X, Y, ITERS, OP: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    y = tl.load(X + offs)
    if OP == "tanh_f16":
        y = y.to(tl.float16)
    for _ in range(ITERS):
        for _j in tl.static_range(16):
            y = _asm1(y, OP)
    tl.store(Y + offs, y.to(tl.float32))


sms = torch.cuda.get_device_properties(0).multi_processor_count
BLOCK, ITERS, PER_SM = 1024, 256, 16
n = sms * PER_SM * BLOCK
x = torch.rand(n, device="cuda") * 0.5 + 0.25
y = torch.empty_like(x)
rates = {}
for op in ("ffma", "tanh", "ex2", "rcp", "ex2rcp", "tanh_f16"):
    fn = lambda: _sfu_kernel[(sms * PER_SM,)](x, y, ITERS, OP=op, BLOCK=BLOCK, num_warps=4)
    fn()
    torch.cuda.synchronize()
    ms = triton.testing.do_bench(fn, warmup=50, rep=300, return_mode="median")
    rates[op] = n * ITERS * 16 / (ms * 1e-3)
    sass = ""
    try:
        k = _sfu_kernel.warmup(x, y, ITERS, OP=op, BLOCK=BLOCK, num_warps=4, grid=(1,))
        sass = " ".join(sorted({w for w in k.asm["sass"].split() if w.startswith("MUFU")}))
    except Exception as e:  # noqa: BLE001 - only a label
        sass = f"(no sass: {type(e).__name__})"
    print(f"op {op:9s} {ms:8.3f} ms {rates[op] / 1e9:9.1f} Gop/s {sass}", flush=True)
clock = rates["ffma"] / (128 * sms)
print(f"RESULT clock from FFMA at 128/clk/SM: {clock / 1e6:.0f} MHz", flush=True)
for op, r in rates.items():
    print(f"RESULT {op:9s} {r / (sms * clock):6.2f} ops/clk/SM ({r / 1e9:.0f} Gop/s)", flush=True)
