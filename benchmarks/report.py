"""Turn a pytest-benchmark JSON (from `pytest benchmarks/ --benchmark-only --benchmark-json=F`)
into the markdown table committed beside it: one row per benchmark, with the do_bench median
and the throughput each benchmark recorded in extra_info.

    python benchmarks/report.py benchmarks/results/h100.json > benchmarks/results/h100.md
"""
import argparse
import json
from pathlib import Path

COLUMNS = [("median_ms", "median ms", "{:.4f}"), ("tflops", "TFLOP/s", "{:.1f}"),
           ("gbps", "GB/s", "{:.0f}"), ("floor_ms", "floor ms", "{:.4f}"),
           ("tokens_per_s", "tokens/s", "{:,.0f}"), ("mfu", "MFU", "{:.1%}"),
           ("peak_mem_gib", "peak GiB", "{:.2f}")]


def render(data: dict) -> str:
    env = data.get("fastgpt", {})
    lines = [f"Device: {env.get('device', '?')}; torch {env.get('torch', '?')}, "
             f"triton {env.get('triton', '?')}, CUDA {env.get('cuda', '?')}, "
             f"python {env.get('python', '?')}; {data.get('datetime', '')}",
             f"Command: `{env.get('command', '?')}`", ""]
    rows = data.get("benchmarks", [])
    used = [c for c in COLUMNS if any(c[0] in r.get("extra_info", {}) for r in rows)]
    lines.append("| benchmark | " + " | ".join(c[1] for c in used) + " |")
    lines.append("|---|" + "---|" * len(used))
    for r in rows:
        extra = r.get("extra_info", {})
        cells = [fmt.format(extra[key]) if key in extra else "" for key, _, fmt in used]
        lines.append(f"| {r['fullname'].split('::', 1)[-1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json_file", type=Path)
    args = parser.parse_args(argv)
    print(render(json.loads(args.json_file.read_text())), end="")


if __name__ == "__main__":
    main()
