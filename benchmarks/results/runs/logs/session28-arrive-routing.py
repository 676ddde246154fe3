import re, torch, triton
from triton.backends.compiler import GPUTarget
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon._runtime import GluonASTSource
from triton.experimental.gluon.language.nvidia.hopper import mbarrier

@gluon.jit
def k(X, FROM: gl.constexpr, TWO: gl.constexpr):
    bar = mbarrier.allocate_mbarrier(two_ctas=TWO)
    mbarrier.init(bar, count=2)
    if FROM >= 0:
        mbarrier.arrive(bar, from_cta=FROM)
    else:
        mbarrier.arrive(bar)
    mbarrier.wait(bar, 0)

for frm in (-1, 0, 1):
    for two in (False, True):
        c = triton.compile(GluonASTSource(k, {"X": "*fp32", "FROM": "constexpr", "TWO": "constexpr"}, {"FROM": frm, "TWO": two}),
                           target=GPUTarget("cuda", 90, 32), options={"num_warps": 4, "num_ctas": 2})
        lines = [l.strip() for l in c.asm["ptx"].split("\n") if re.search(r"mbarrier|mapa|ctarank|cluster", l)]
        print(f"FROM {frm} TWO {two}:", " | ".join(lines))
