"""Runs 224-228: a clock-instrumented copy of a mlp_gluon-like module (python run224-make-timed.py SRC DST):
per tile, four %clock64 stamps of the consumer (tile start, K loop start after the turn, accumulators
ready, epilogue issued)."""
import sys
src, dst = sys.argv[1], sys.argv[2]
s = open(src).read()
def sub(old, new, count=1):
    global s
    assert s.count(old) == count, (old, s.count(old))
    s = s.replace(old, new)
# a clock helper before _tile_coords
sub("    @gluon.jit\n    def _tile_coords(", '''    @gluon.jit
    def _clock(dep):
        return gl.inline_asm_elementwise("mov.u64 $0, %clock64;", "=l,r", [dep], dtype=gl.int64, is_pure=False,
                                         pack=1)

    @gluon.jit
    def _tile_coords(''')
# consumer signature
sub("""                      EXP_SHIFT: gl.constexpr = False, CAP: gl.constexpr = 0.0, GRAD_CODE: gl.constexpr = False):
        \"\"\"One warpgroup""", """                      EXP_SHIFT: gl.constexpr = False, CAP: gl.constexpr = 0.0, GRAD_CODE: gl.constexpr = False,
                      Clocks=None, TIMING: gl.constexpr = False):
        \"\"\"One warpgroup""")
sub("""            if not SHARED_TILE:
                # K loops strictly""", """            if TIMING:
                gl.store(Clocks + tile_id * 4, _clock(tile_id))
            if not SHARED_TILE:
                # K loops strictly""")
sub("""                mbarrier.wait(turn.index(WHICH), ((idx // 2) & 1) ^ (1 - WHICH))
""", """                mbarrier.wait(turn.index(WHICH), ((idx // 2) & 1) ^ (1 - WHICH))
            if TIMING:
                gl.store(Clocks + tile_id * 4 + 1, _clock(tile_id))
""")
sub("""            # epilogue (ping-pong: the other warpgroup's K loop runs meanwhile)
""", """            if TIMING:
                gl.store(Clocks + tile_id * 4 + 2, _clock(tile_id))
            # epilogue (ping-pong: the other warpgroup's K loop runs meanwhile)
""")
sub("""            if BIAS_GRAD:   # TMA zero-fills""", """            if TIMING:
                gl.store(Clocks + tile_id * 4 + 3, _clock(tile_id))
            if BIAS_GRAD:   # TMA zero-fills""")
# consumer1 and kernel pass-through
sub("""                       EXP_SHIFT: gl.constexpr, CAP: gl.constexpr, GRAD_CODE: gl.constexpr):
        \"\"\"The second consumer""", """                       EXP_SHIFT: gl.constexpr, CAP: gl.constexpr, GRAD_CODE: gl.constexpr, Clocks, TIMING: gl.constexpr):
        \"\"\"The second consumer""")
sub("""                      EXP_SHIFT, CAP, GRAD_CODE)

    @gluon.jit""", """                      EXP_SHIFT, CAP, GRAD_CODE, Clocks, TIMING)

    @gluon.jit""")
sub("""                          CAP: gl.constexpr = 0.0, GRAD_CODE: gl.constexpr = False):
        dtype""", """                          CAP: gl.constexpr = 0.0, GRAD_CODE: gl.constexpr = False, Clocks=None,
                          TIMING: gl.constexpr = False):
        dtype""")
sub("""B_NK, COOPERATIVE, 0, EXP_SHIFT, CAP, GRAD_CODE)),""", """B_NK, COOPERATIVE, 0, EXP_SHIFT, CAP, GRAD_CODE, Clocks, TIMING)),""")
sub("""B_NK, COOPERATIVE, 1, EXP_SHIFT, CAP, GRAD_CODE)),""", """B_NK, COOPERATIVE, 1, EXP_SHIFT, CAP, GRAD_CODE, Clocks, TIMING)),""")
open(dst, "w").write(s)
