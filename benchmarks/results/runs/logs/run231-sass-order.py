"""The op sequence of a SASS listing (cuobjdump -sass), compressed: runs of MUFU, shared-memory and TMA
stores, barriers, wgmma; "(+n)" counts the other instructions between. Session 30 (run 231) read ptxas's
order in the MLP forward's epilogue with it.
    python run231-sass-order.py KERNEL.sass"""
import re, sys
keys = ["MUFU.TANH", "MUFU.EX2", "STSM", "STS", "UTMASTG", "UBLKCP", "UTMALDG", "BAR.SYNC", "BAR.ARV", "CS2R", "HGMMA", "SYNCS", "STG", "WARPGROUP", "EXIT", "BRA", "LDS"]
ops = []
for line in open(sys.argv[1]):
    m = re.match(r"\s+/\*([0-9a-f]+)\*/\s+(?:@!?U?P[0-9T] )?([A-Z0-9_.]+)", line)
    if not m: continue
    op = m.group(2)
    k = next((k for k in keys if op.startswith(k)), None)
    if k: ops.append(k)
    else: ops.append(".")
out, last, n, other = [], None, 0, 0
for o in ops:
    if o == ".":
        other += 1; continue
    if o == last: n += 1; continue
    if last: out.append(f"{last}x{n}" + (f"(+{other})" if other else ""))
    last, n, other = o, 1, 0
out.append(f"{last}x{n}")
print(" ".join(out))
