"""Turn a pytest-benchmark JSON (from `pytest benchmarks/ --benchmark-only --benchmark-json=F`)
into the markdown table committed beside it: one row per benchmark, with the do_bench median
and the throughput each benchmark recorded in extra_info.

    python benchmarks/report.py benchmarks/results/h100.json > benchmarks/results/h100.md
    python benchmarks/report.py results.json --readme README.md --section train_step

With --readme, the table replaces the text between `<!-- bench:SECTION -->` and
`<!-- /bench:SECTION -->` in that file instead of being printed, so the README's numbers
are always a copy of a committed JSON, never typed by hand.
"""
import argparse
import json
import re
from pathlib import Path

COLUMNS = [("median_ms", "median ms", "{:.4f}"), ("eager_ms", "eager ms", "{:.4f}"), ("tflops", "TFLOP/s", "{:.1f}"),
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


def replace_section(text: str, section: str, table: str) -> str:
    pattern = re.compile(rf"(<!-- bench:{re.escape(section)} -->\n).*?(<!-- /bench:{re.escape(section)} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"no <!-- bench:{section} --> ... <!-- /bench:{section} --> markers found")
    return pattern.sub(lambda m: m.group(1) + table + m.group(2), text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json_file", type=Path)
    parser.add_argument("--readme", type=Path, help="write the table into this markdown file")
    parser.add_argument("--section", help="the marker name in --readme")
    parser.add_argument("-k", dest="keyword", help="only benchmarks whose name contains this")
    args = parser.parse_args(argv)
    data = json.loads(args.json_file.read_text())
    if args.keyword:
        data["benchmarks"] = [b for b in data["benchmarks"] if args.keyword in b["fullname"]]
    table = render(data)
    if args.readme:
        if not args.section:
            parser.error("--readme needs --section")
        args.readme.write_text(replace_section(args.readme.read_text(), args.section, table))
    else:
        print(table, end="")


if __name__ == "__main__":
    main()
