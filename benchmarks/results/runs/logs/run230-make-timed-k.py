"""run 230: make_timed's stamps (4 a tile) plus a fifth: the K loop's summed waits on the slots'
`ready` barriers (%clock64 around each wait)."""
import os, subprocess, sys
src, dst = sys.argv[1], sys.argv[2]
subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "run224-make-timed.py"), src, dst], check=True)
s = open(dst).read()
def sub(old, new):
    global s
    assert s.count(old) == 1, old
    s = s.replace(old, new)
sub("gl.store(Clocks + tile_id * 4, _clock(tile_id))", "gl.store(Clocks + tile_id * 5, _clock(tile_id))")
sub("gl.store(Clocks + tile_id * 4 + 1, _clock(tile_id))", "gl.store(Clocks + tile_id * 5 + 1, _clock(tile_id))")
sub("gl.store(Clocks + tile_id * 4 + 2, _clock(tile_id))", "gl.store(Clocks + tile_id * 5 + 2, _clock(tile_id))\n                gl.store(Clocks + tile_id * 5 + 4, waited)")
sub("gl.store(Clocks + tile_id * 4 + 3, _clock(tile_id))", "gl.store(Clocks + tile_id * 5 + 3, _clock(tile_id))")
sub("""                    HALF: gl.constexpr, B_NK: gl.constexpr, PINGPONG: gl.constexpr, WHICH: gl.constexpr):""",
    """                    HALF: gl.constexpr, B_NK: gl.constexpr, PINGPONG: gl.constexpr, WHICH: gl.constexpr,
                    TIMING: gl.constexpr = False):""")
sub("""        acc0 = acc_init
        acc1 = acc_init
        for k in range(k_tiles):
            count = base + k
            s = count % NUM_STAGES
            mbarrier.wait(ready.index(s), (count // NUM_STAGES) & 1)
""", """        acc0 = acc_init
        acc1 = acc_init
        waited = base.to(gl.int64) * 0
        for k in range(k_tiles):
            count = base + k
            s = count % NUM_STAGES
            if TIMING:
                t0 = _clock(count)
            mbarrier.wait(ready.index(s), (count // NUM_STAGES) & 1)
            if TIMING:
                waited += _clock(count) - t0
""")
sub("""        mbarrier.arrive(empty.index((base + k_tiles - 1) % NUM_STAGES))
        return acc0, acc1""", """        mbarrier.arrive(empty.index((base + k_tiles - 1) % NUM_STAGES))
        return acc0, acc1, waited""")
sub("""            acc0, acc1 = _mlp_k_loop(a_bufs, b_bufs, ready, empty, turn, idx * k_tiles, k_tiles, acc_init,
                                     ROW0, HALF, B_NK, not SHARED_TILE, WHICH)""", """            acc0, acc1, waited = _mlp_k_loop(a_bufs, b_bufs, ready, empty, turn, idx * k_tiles, k_tiles, acc_init,
                                             ROW0, HALF, B_NK, not SHARED_TILE, WHICH, TIMING)""")
open(dst, "w").write(s)
