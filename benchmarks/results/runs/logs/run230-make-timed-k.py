"""Run 230: run224-make-timed.py's stamps (4 a tile) plus a fifth, the K loop's summed waits on the
slots' `ready` barriers (%clock64 around each wait), and six in the forward's epilogue (GRAD_CODE):
per half, before the code's store, after it is issued, after h's is issued. Eleven a tile.
    python run230-make-timed-k.py SRC DST"""
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

# and six in the forward's epilogue (GRAD_CODE): per half, before the code's store, after it is
# issued, after h's is issued; eleven stamps a tile in all
s = open(dst).read()
for j in range(5):
    old = f"Clocks + tile_id * 5 + {j}" if j else "Clocks + tile_id * 5,"
    new = f"Clocks + tile_id * 11 + {j}" if j else "Clocks + tile_id * 11,"
    assert s.count(old) == 1, old
    s = s.replace(old, new)
sub_pairs = [
    ("""                       GELU_GRAD: gl.constexpr, WHICH: gl.constexpr, GRAD_CODE: gl.constexpr):
        \"\"\"Rows off_m + 64h..""", """                       GELU_GRAD: gl.constexpr, WHICH: gl.constexpr, GRAD_CODE: gl.constexpr,
                       Clocks=None, TIMING: gl.constexpr = False, tile_id=0):
        \"\"\"Rows off_m + 64h.."""),
    ("""                gelu, code = _gelu_grad_code(acc)
                _store_tile(aux_desc, _code_buffer(c_bufs.index(2 * WHICH), aux_desc), code, row, off_n, 1)
""", """                gelu, code = _gelu_grad_code(acc)
                if TIMING:
                    gl.store(Clocks + tile_id * 11 + 5 + 3 * h, _clock(tile_id))
                _store_tile(aux_desc, _code_buffer(c_bufs.index(2 * WHICH), aux_desc), code, row, off_n, 1)
                if TIMING:
                    gl.store(Clocks + tile_id * 11 + 6 + 3 * h, _clock(tile_id))
"""),
    ("""            _store_tile(out_desc, c_bufs.index(2 * WHICH + 1), gelu, row, off_n, 1)
        else:""", """            _store_tile(out_desc, c_bufs.index(2 * WHICH + 1), gelu, row, off_n, 1)
            if TIMING:
                gl.store(Clocks + tile_id * 11 + 7 + 3 * h, _clock(tile_id))
        else:"""),
    ("""                _epilogue_half(acc0, 0, out_desc, aux_desc, pre_desc, c_bufs, pre_ready, off_m, off_n, phase,
                               GELU_GRAD, WHICH, GRAD_CODE)""", """                _epilogue_half(acc0, 0, out_desc, aux_desc, pre_desc, c_bufs, pre_ready, off_m, off_n, phase,
                               GELU_GRAD, WHICH, GRAD_CODE, Clocks, TIMING, tile_id)"""),
    ("""                _epilogue_half(acc1, 1, out_desc, aux_desc, pre_desc, c_bufs, pre_ready, off_m, off_n, phase,
                               GELU_GRAD, WHICH, GRAD_CODE)""", """                _epilogue_half(acc1, 1, out_desc, aux_desc, pre_desc, c_bufs, pre_ready, off_m, off_n, phase,
                               GELU_GRAD, WHICH, GRAD_CODE, Clocks, TIMING, tile_id)"""),
]
for old, new in sub_pairs:
    assert s.count(old) == 1, old
    s = s.replace(old, new)
open(dst, "w").write(s)
