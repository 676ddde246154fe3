"""Bar chart of the GPT-2 train-step benchmark: tokens/s and peak memory per configuration.

Where the rows carry the sustained rate (bench_train_step.SUSTAIN_S: the step back to back at the
GPU's power cap), the tokens/s panel shows it beside the short window's, one pair of bars a
configuration. Reads the pytest-benchmark JSON of benchmarks/bench_train_step.py (the extra_info each
configuration recorded), or the folder of one-row JSONs that the benchmark writes as each
configuration finishes (FASTGPT_BENCH_OUT=DIR gives DIR/train_step/), and writes a PNG, the
device named in the title. Needs matplotlib.

    python benchmarks/plot_train_step.py out.json -o benchmarks/results/train_step.png
    python benchmarks/plot_train_step.py DIR/train_step -o benchmarks/results/train_step.png
    python benchmarks/plot_train_step.py benchmarks/results/runs/run26-train_step -o benchmarks/results/train_step.png
"""
import argparse
import json
import sys
from pathlib import Path


def rows(data: dict) -> list[dict]:
    """extra_info of every train-step benchmark, in the order they ran."""
    found = [b["extra_info"] for b in data.get("benchmarks", [])
             if "test_train_step" in b.get("name", "") and "tokens_per_s" in b.get("extra_info", {})]
    if not found:
        raise SystemExit("no test_train_step results with tokens_per_s in this JSON: run "
                         "pytest benchmarks/bench_train_step.py --benchmark-only --benchmark-json=F")
    return found


def pyplot(script: str):
    """matplotlib.pyplot drawing to files (Agg), or exit saying that `script` needs matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit(f"{script} needs matplotlib: pip install matplotlib") from None
    return plt


def save(fig, title: str, out: Path, title_size: float | None = None) -> None:
    """Title the figure, lay it out and write it as a PNG."""
    fig.suptitle(title, **({"fontsize": title_size} if title_size else {}))   # None would mean 10, not "large"
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    print(f"wrote {out}")


def _bars(ax, x: list[float], values: list[float], width: float, colors: list[str], fmt: str,
          label: str | None = None, fontsize: int = 8):
    """One series of bars at positions x, each labelled with its value."""
    bars = ax.bar(x, values, width=width, color=colors, label=label)
    ax.bar_label(bars, labels=[fmt.format(v) for v in values], fontsize=fontsize)
    return bars


def plot(data: dict, out: Path) -> None:
    plt = pyplot("plot_train_step.py")
    results = rows(data)
    names = [r["config"] for r in results]
    device = results[0].get("device") or data.get("fastgpt", {}).get("device", "unknown device")
    fig, (ax_tok, ax_mem) = plt.subplots(1, 2, figsize=(13, 4.8))
    x = list(range(len(names)))
    colors = ["#8c8c8c" if n.startswith("reference") else "#1f77b4" for n in names]
    tokens = [r["tokens_per_s"] / 1e3 for r in results]
    sustained = all("sustained_tokens_per_s" in r for r in results)
    if sustained:    # each configuration's window and sustained rates side by side, the latter darker
        dark = ["#4d4d4d" if n.startswith("reference") else "#0b3c61" for n in names]
        window_bars = _bars(ax_tok, [i - 0.2 for i in x], tokens, 0.4, colors, "{:.0f}k", "0.3 s window", 6)
        _bars(ax_tok, [i + 0.2 for i in x], [r["sustained_tokens_per_s"] / 1e3 for r in results], 0.4, dark,
              "{:.0f}k", "sustained (power cap)", 6)
        ax_tok.legend(fontsize=7, loc="upper left")
    else:
        window_bars = _bars(ax_tok, x, tokens, 0.8, colors, "{:.0f}k")
    _bars(ax_mem, x, [r["peak_mem_gib"] for r in results], 0.8, colors, "{:.1f}")
    for ax, label in ((ax_tok, "tokens/s (thousands)"), (ax_mem, "peak memory (GiB)")):
        ax.set_ylabel(label)
        ax.set_xticks(x, names)
        ax.tick_params(axis="x", rotation=40, labelsize=7)
        plt.setp(ax.get_xticklabels(), ha="right", rotation_mode="anchor")
        ax.grid(axis="y", alpha=0.3)
    for r, bar in zip(results, window_bars):
        ax_tok.annotate(f"MFU {r['mfu']:.0%}", (bar.get_x() + bar.get_width() / 2, 0),
                        xytext=(0, 4), textcoords="offset points", ha="center", fontsize=5 if sustained else 6,
                        color="white")
    first = results[0]
    save(fig, f"GPT-2 124M train step (batch {first.get('batch', '?')} x block "
              f"{first.get('block_size', '?')}, bf16 autocast, fused AdamW) on {device}", out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json_file", type=Path, help="pytest-benchmark JSON of bench_train_step.py, or a folder of its rows")
    parser.add_argument("-o", "--out", type=Path, default=Path("train_step.png"), help="PNG to write")
    args = parser.parse_args(argv)
    if not args.json_file.exists():
        sys.exit(f"no such file: {args.json_file}")
    if args.json_file.is_dir():   # per-configuration rows, in bench_train_step's order
        from results import train_step_rows
        # a call that timed on several GPUs: each configuration's row from the lowest-numbered GPU
        found: dict[str, dict] = {}
        for _, row in train_step_rows(args.json_file):
            found.setdefault(row["config"], row)
        data = {"benchmarks": [{"name": f"test_train_step[{name}]", "extra_info": row}
                               for name, row in found.items()]}
    else:
        data = json.loads(args.json_file.read_text())
    plot(data, args.out)


if __name__ == "__main__":
    main()
