"""Plot of a multi-GPU scaling run (benchmarks/scaling.py's scaling.json): tokens/s per run
against N x the 1-GPU figure, and the N-GPU loss curve over the two 1-GPU global-batch runs
(raw and smoothed), the device named in the title. Needs matplotlib.

    python benchmarks/plot_scaling.py benchmarks/results/runs/run19-scaling/scaling.json \
        -o benchmarks/results/scaling.png
"""
import argparse
import json
from pathlib import Path

from convergence import moving_average
from plot_train_step import pyplot, save


def plot(result: dict, out: Path) -> None:
    plt = pyplot("plot_scaling.py")
    env, n = result["environment"], int(result["args"]["gpus"])
    fig, (ax_tok, ax_loss) = plt.subplots(1, 2, figsize=(12, 4.4), gridspec_kw={"width_ratios": [1, 1.4]})

    rows = result["rows"]
    names = [r["run"] for r in rows]
    bars = ax_tok.bar(names, [r["tokens_per_s"] / 1e3 for r in rows],
                      color=["#1f77b4" if r["gpus"] > 1 else "#8c8c8c" for r in rows])
    ax_tok.bar_label(bars, labels=[f"{r['tokens_per_s'] / 1e3:.0f}k\n{r['scaling_efficiency']:.1%}" for r in rows],
                     fontsize=8, label_type="center", color="white")
    for r, bar in zip(rows, bars):       # the ideal: N x the same path's 1-GPU figure
        if r["gpus"] > 1:
            ideal = r["tokens_per_s"] / r["scaling_efficiency"] / 1e3
            ax_tok.hlines(ideal, bar.get_x(), bar.get_x() + bar.get_width(), colors="k", linestyles="dashed")
    ax_tok.set_ylabel("tokens/s (thousands); dashed: N x 1 GPU")
    ax_tok.set_ylim(0, max(r["tokens_per_s"] / r["scaling_efficiency"] for r in rows) / 1e3 * 1.2)
    ax_tok.tick_params(axis="x", labelsize=8)
    ax_tok.grid(axis="y", alpha=0.3)

    window = int(result["args"]["smooth"])
    for (name, losses), color in zip(result["losses"].items(), ["#1f77b4", "#ff7f0e", "#2ca02c"]):
        steps = range(1, len(losses) + 1)
        ax_loss.plot(steps, losses, color=color, alpha=0.25, linewidth=0.8)
        ax_loss.plot(steps, moving_average(losses, window), color=color, label=name)
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel(f"training loss (faint: per step; solid: {window}-step mean)")
    ax_loss.set_ylim(top=8)
    ax_loss.legend(fontsize=8)
    ax_loss.grid(alpha=0.3)
    ax_loss.set_title(f"max smoothed difference {max(result['max_smoothed_loss_difference'].values()):.3f} "
                      f"nats, bound {result['loss_bound']:.3f}", fontsize=9)
    save(fig, f"fastgpt-train GPT-2 124M, block 512, {result['args']['batch_size']} sequences per GPU, bf16: "
              f"1 vs {n} x {env['device']} (torch {env['torch']}, triton {env['triton']})", out, title_size=10)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scaling_json", type=Path)
    parser.add_argument("-o", "--out", type=Path, default=Path("benchmarks/results/scaling.png"))
    args = parser.parse_args(argv)
    plot(json.loads(args.scaling_json.read_text()), args.out)


if __name__ == "__main__":
    main()
