"""Regenerate benchmarks/RESULTS.md from the committed run files under results/runs/.

Every table is report.render() of a pytest-benchmark JSON (device, versions and command
included), so no number in RESULTS.md is typed by hand; the README's training-step section is
rewritten from the same files.

    python benchmarks/results.py
"""
import json
import re
from pathlib import Path
from statistics import median
from typing import Callable

from bench_train_step import CONFIG_ORDER
from report import render, replace_section
from scaling import scaling_table
from timing import joules_per_step

HERE = Path(__file__).parent
# Run 160 (session 21): every op benchmark file on the code of that session, one H100, one file each
OPS_RUN = "run160"
OPS_RUN_FILES = ["attention", "layernorm", "mlp", "cross_entropy", "linear", "embedding", "adamw", "gemm"]
# the column sum's rows again after session 21 pipelined its loads (run 164, another H100)
COLUMN_SUM_RUN = "run164-linear-bias_grad.json"
# attention again on session 23's code (run 175, another H100), after the head-major program order
# (session 22); the MLP on session 24's (run 185, another H100): gelu'(pre)'s 8-bit codes, the
# forward's epilogue trimmed
ATTENTION_RUN, MLP_RUN = "run175-attention.json", "run185-mlp.json"
# The summary at the top of RESULTS.md and in the README: (op, file, fastgpt's row, the references' rows).
# Each reference is what a user would otherwise run for that op: PyTorch eager, torch.compile of the
# same reference, and for attention SDPA's backends (on the model's layout: the q, k, v views of
# c_attn's packed output; and on contiguous (B, H, T, D) tensors).
OP_SUMMARY = [
    ("causal attention fwd, T 512, qkv views (the model's layout)", ATTENTION_RUN, "test_attention[512-fastgpt_packed-fwd]",
     ["test_attention[512-sdpa_flash_qkv-fwd]", "test_attention[512-sdpa_cudnn_qkv-fwd]"]),
    ("causal attention fwd+bwd, T 512, qkv views (the model's layout)", ATTENTION_RUN,
     "test_attention[512-fastgpt_packed-fwd_bwd]",
     ["test_attention[512-sdpa_flash_qkv-fwd_bwd]", "test_attention[512-sdpa_cudnn_qkv-fwd_bwd]"]),
    ("causal attention fwd, T 512, contiguous", ATTENTION_RUN, "test_attention[512-fastgpt-fwd]",
     ["test_attention[512-sdpa_flash-fwd]", "test_attention[512-sdpa_cudnn-fwd]", "test_attention[512-sdpa_efficient-fwd]"]),
    ("causal attention fwd+bwd, T 512, contiguous", ATTENTION_RUN, "test_attention[512-fastgpt-fwd_bwd]",
     ["test_attention[512-sdpa_flash-fwd_bwd]", "test_attention[512-sdpa_cudnn-fwd_bwd]",
      "test_attention[512-sdpa_efficient-fwd_bwd]"]),
    ("causal attention fwd+bwd, T 2048, contiguous", ATTENTION_RUN, "test_attention[2048-fastgpt-fwd_bwd]",
     ["test_attention[2048-sdpa_flash-fwd_bwd]", "test_attention[2048-sdpa_cudnn-fwd_bwd]"]),
    ("residual add + LayerNorm fwd", "layernorm", "test_add_layernorm[triton-fwd]",
     ["test_add_layernorm[torch-fwd]", "test_add_layernorm[compile-fwd]"]),
    ("residual add + LayerNorm fwd+bwd", "layernorm", "test_add_layernorm[triton-fwd_bwd]",
     ["test_add_layernorm[torch-fwd_bwd]", "test_add_layernorm[compile-fwd_bwd]"]),
    ("bias + GELU MLP fwd", MLP_RUN, "test_mlp_triton[triton-fwd]",
     ["test_mlp_reference[eager-fwd]", "test_mlp_reference[compile-fwd]"]),
    ("bias + GELU MLP fwd+bwd", MLP_RUN, "test_mlp_triton[triton-fwd_bwd]",
     ["test_mlp_reference[eager-fwd_bwd]", "test_mlp_reference[compile-fwd_bwd]"]),
    ("LM head + cross-entropy fwd+bwd", "cross_entropy", "test_lm_head_loss_triton[default]",
     ["test_lm_head_loss_reference[eager]", "test_lm_head_loss_reference[compile]"]),
    ("linear (c_attn) fwd+bwd", "linear", "test_linear[triton-c_attn]", ["test_linear[torch-c_attn]"]),
    ("bias gradient (column sum), c_attn", COLUMN_SUM_RUN, "test_bias_grad[triton-c_attn]",
     ["test_bias_grad[torch-c_attn]", "test_bias_grad[compile-c_attn]"]),
    ("bias gradient (column sum), c_proj", COLUMN_SUM_RUN, "test_bias_grad[triton-c_proj]",
     ["test_bias_grad[torch-c_proj]", "test_bias_grad[compile-c_proj]"]),
    ("token + position embedding fwd+bwd (GPT's use)", "embedding", "test_gpt[triton-fwd_bwd]", ["test_gpt[torch-fwd_bwd]"]),
    ("AdamW step (+ bf16 copies)", "adamw", "test_adamw_step[triton]", ["test_adamw_step[torch]"]),
]


def _medians(path: Path) -> dict:
    data = json.loads(path.read_text())
    return {b["fullname"].split("::", 1)[-1]: b["extra_info"]["median_ms"] for b in data["benchmarks"]}


def op_summary_table(runs: Path) -> str:
    """fastgpt's time for each op against each reference's, from OPS_RUN's files (or the file an
    entry names): a reference's time over ours (above 1: ours is faster)."""
    lines = ["| op | fastgpt ms | reference: ms (reference / fastgpt) |", "|---|---|---|"]
    for op, file, ours, references in OP_SUMMARY:
        medians = _medians(runs / (file if file.endswith(".json") else f"{OPS_RUN}-{file}.json"))
        cells = ", ".join(f"{ref.split('[', 1)[1].rstrip(']')}: {medians[ref]:.4f} ({medians[ref] / medians[ours]:.2f}x)"
                          for ref in references)
        lines.append(f"| {op} | {medians[ours]:.4f} | {cells} |")
    return "\n".join(lines) + "\n"


def _from_repository_root(text: str) -> str:
    """A note written for RESULTS.md (paths from benchmarks/) with its paths from the repository's
    root, for the README."""
    return text.replace("`results/runs/", "`benchmarks/results/runs/").replace(
        "`runs/logs/", "`benchmarks/results/runs/logs/").replace("`results.py`", "`benchmarks/results.py`")


def readme_ops_section(runs: Path) -> str:
    """The README's copy of RESULTS.md's op summary."""
    return _from_repository_root(OPS_SUMMARY_NOTE.replace("## ", "### ", 1)) + "\n" + op_summary_table(runs)


OP_RUNS = [
    ("Causal flash attention on session 23's code (run 175: the head-major program order; the summary's "
     "attention rows)", ATTENTION_RUN),
    ("Fused bias + GELU MLP on session 24's code (run 185: gelu'(pre) kept as 8-bit codes for the backward, "
     "the forward's epilogue trimmed; "
     "`triton-pre_kept` keeps pre in bf16 as before; the summary's MLP rows)", MLP_RUN),
] + [(f"{file} (run 160, session 21: the summary's other rows)", f"{OPS_RUN}-{file}.json") for file in OPS_RUN_FILES] + [
    ("The bias-gradient column sum with its loads pipelined (run 164, session 21; `triton-s1-sm4` is run "
     "160's default)", COLUMN_SUM_RUN),
    ("The step's plain GEMMs (session 17, run 121, the final code): PyTorch's call (`torch`) against "
     "kernels/gemm.py's timed cuBLASLt choice (`fastgpt`; the choice and every candidate's timed median in "
     "extra_info), each replayed alone in a CUDA graph. Within ~6% either way (the LM head's dX runs the "
     "same kernel in both rows: 441 against 469 us is this table's noise); summed over a step the two are "
     "equal here, where the graphed step itself ran 0.11-0.18 ms faster with the choices in four "
     "alternating A/B sets (runs 113, 114, 119, 121)", "run121-gemm.json"),
    ("The same benchmark in run 120, the choice timed without queueing each round behind a GPU sleep "
     "(the host's launch then counted in a short GEMM's time)", "run120-gemm.json"),
    ("Fused LM head + cross-entropy (session 16, run 108): the exp-logits path (the default for bf16 on "
     "Hopper: the logits GEMM's Gluon epilogue writes exp(logits - the target's logit) and its row sums, "
     "no loss pass) beside the loss kernel's path, the chunk sizes, the GEMMs alone and the loss kernels",
     "run108-cross_entropy.json"),
    ("The same benchmark in run 104, before the exp epilogue in log2 units and grad_x's row-scale kernel",
     "run104-cross_entropy.json"),
    ("Causal flash attention at T = 512 (B 128: 65536 tokens) and FusedCausalSelfAttention, session "
     "15: the dQ kernel's qkv bias partials on the tensor cores, register caps on two tiles",
     "run92-attention.json"),
    ("Causal flash attention (packed qkv: the model's path; CUDA-graph replay)", "run5-attention.json"),
    ("FusedCausalSelfAttention forward+backward, c_attn's bias gradient by a column sum or from the "
     "attention backward (fuse_qkv_bias_grad); H200", "run29-attention_module.json"),
    ("Causal flash attention, first run (contiguous and q/k/v views; eager timing)", "run2-attention.json"),
    ("Fused residual-add + LayerNorm: triton, cuda, torch, torch.compile", "run9-layernorm.json"),
    ("Fused residual-add + LayerNorm: Triton tile variants", "run5-layernorm.json"),
    ("Fused residual-add + LayerNorm with the branch's bias (x_bias), beside the op without it",
     "run31-layernorm.json"),
    ("Fused bias + GELU MLP", "run5-mlp.json"),
    ("Fused bias + GELU MLP: the cuda backend's MLPs, and its cuBLASLt epilogue GEMMs one at a "
     "time beside cuBLAS + our passes", "run22-mlp.json"),
    ("Fused bias + GELU MLP: the cuda backend's MLPs again, with DGELU alone (no bias gradient)",
     "run24-mlp.json"),
    ("Fused LM head + cross-entropy, with the persistent Gluon loss kernel (session 13) beside the "
     "Triton kernel's single and two passes", "run77-cross_entropy.json"),
    ("Fused LM head + cross-entropy, first run", "run4-cross_entropy.json"),
    ("Cross-entropy loss kernel variants, and the whole op. In this run `default` and `single pass`"
     " were the one-exponential variant (fp16 copy of exp(z - max), dropped after it), `single pass,"
     " exp twice` today's kernel", "run30-cross_entropy.json"),
    ("Linear: the bias gradient (column sum) and fused_linear fwd+bwd against F.linear", "run15-linear.json"),
    ("Linear: column-sum tile variants", "run13-linear-variants.json"),
    ("AdamW step writing the bf16 parameter copies (GPT-2's 124M parameters) against torch's fused "
     "AdamW with the two casts beside it", "run34-adamw.json"),
    ("Causal flash attention with Delta computed by the dQ kernel (session 8), the model's path and "
     "FusedCausalSelfAttention", "run35-attention-dq-delta.json"),
    ("The same rows in the same call with the former separate preprocess kernel",
     "run35-attention-preprocess.json"),
    ("Embedding as the GPT uses it (session 14): the token lookup plus the position table, alone and "
     "with both tables' gradients given the tied LM head's, fused_tied_embedding against PyTorch "
     "(F.embedding + the broadcast add; autograd adds the two token-table gradients)", "run81-embedding.json"),
    ("Embedding backward (session 14, run 84): the 256 x 64 long-run tile as the default (`triton`), "
     "beside the variants around it", "run84-embedding.json"),
    ("Embedding backward (session 14): the kernel's long-run tile, 128 x 128 (then the default, the "
     "`triton` rows) against 256 x 64 (the default since: `triton-t256c64w4`) and others, on random "
     "tokens and on Tiny Shakespeare's; and the GPT's use again", "run83-embedding.json"),
    ("Embedding backward (GPT-2's token table, 16384 tokens): the kernel, its tile variants and the "
     "sort alone, against PyTorch's, on random tokens and on Tiny Shakespeare's", "run54-embedding.json"),
    ("Embedding backward: the two designs that lost to PyTorch, a program per four table rows "
     "(run 50) and a program per sorted position (run 51)", "run51-embedding.json"),
]
TRAIN_STEP_RUN = "run195-train_step"
TRAIN_STEP_FOLLOWUP_RUN = "run196-train_step-round1"
# the headline pair on the code of sessions 24-28 (session 25's to 28's changes left the kernels'
# SASS as it was), each device call a freshly started H100 but run 196 (run 195's machine): run 187's
# table, every pair of runs 188-191, then sessions 26's to 28's, which also measured the sustained rate
SESSION24_CODE_PAIRS = ["run187-train_step", "run188-train_step-round1", "run189-train_step-round1",
                        "run190-train_step-round1", "run190-train_step-round2", "run191-train_step-round1",
                        "run191-train_step-round2", "run193-train_step-round1", "run194-train_step-round1",
                        "run195-train_step", "run196-train_step-round1", "run197-train_step-round1",
                        "run203-train_step", "run217-train_step"]
# the headline pair on the current code (session 30's kernel change): run 232's two rounds on a freshly
# started H100, run 234 on another (after the GPU test suite), run 236 on a third (the reference first), run
# 240 on a fourth
CURRENT_CODE_PAIRS = ["run232-train_step-round1", "run232-train_step-round2", "run234-train_step", "run236-train_step",
                      "run240-train_step"]
CURRENT_CODE_RUN = "run232-train_step-round1"
CURRENT_CODE_NOTE = """The current code. Session 30 changed one kernel: the MLP forward's epilogue (kernels/mlp_gluon.py)
runs each 64-row half in its own block, so that ptxas no longer computes both halves' GELU and
codes before any store (c_fc's forward alone and the step's A/B at the power cap: run 231,
`results/runs/logs/run231-ab.log`). Every timing of the pair on it (CURRENT_CODE_PAIRS in
benchmarks/results.py), then run 232's first round's table:
"""
# the headline pair on session 29's code (its exp GEMM change): run 227's two rounds on a freshly
# started H100, runs 228 and 229 on another (229 on 228's machine)
SESSION29_CODE_PAIRS = ["run227-train_step-round1", "run227-train_step-round2", "run228-train_step",
                        "run229-train_step"]
SESSION29_CODE_RUN = "run229-train_step"
SESSION29_CODE_NOTE = """Session 29's code: the LM head's exp GEMM (kernels/mlp_gluon.py, EXP_SHIFT) loads each tile's
per-row shift at the tile's start, before its K loop, where it had loaded it at the start of each
half's epilogue (the exp chunk alone and the step's A/B: run 226, `results/runs/logs/run226-ab.log`).
Every timing of the pair on it (SESSION29_CODE_PAIRS in benchmarks/results.py), then run 229's table:
"""
SUSTAINED_PROBE_LOG = "logs/run192-sustain.log"
TRAIN_STEP_FOLLOWUP_NOTE = """Run 196 (`results/runs/run196-train_step-round1/`, session 26, run 195's machine after the whole GPU
test suite and the convergence check): the headline pair, fastgpt's row first. Every timing of
the pair on the code of sessions 24-28 (the `results/runs/` folders named in the lines below,
SESSION24_CODE_PAIRS in benchmarks/results.py), in bench_train_step's do_bench window (0.3 s
after a warm-up) and, since session 26, sustained (20 s back to back, the second half's median;
run 197's 40 s, on a freshly started machine):
"""
# every code the headline pair was timed on, newest first: (what the code is, the folders of its
# pairs, the folder whose table follows them)
CODE_PAIRS = [(CURRENT_CODE_NOTE, CURRENT_CODE_PAIRS, CURRENT_CODE_RUN),
              (SESSION29_CODE_NOTE, SESSION29_CODE_PAIRS, SESSION29_CODE_RUN),
              (TRAIN_STEP_FOLLOWUP_NOTE, SESSION24_CODE_PAIRS, TRAIN_STEP_FOLLOWUP_RUN)]
SUSTAINED_NOTE = """Sustained. The step holds the H100 at its 700 W power cap (nvidia-smi's "SW power cap" active in
every sample, runs 191-192), where a step's time is its energy over the power the clock is held
to, and the 0.3 s window runs faster than the step keeps up as the GPU warms, fastgpt's denser
step by more (run 191, `runs/logs/run191-clock.log`). The sustained columns above are
bench_train_step's (since session 26); before them, run 192's probe (`results/runs/logs/run192-sustain.log`,
one H100, `runs/logs/run192-sustain.py`) ran each step back to back for 40 s and took the median
of the last third's ~1 s slices, with the SM clock, instantaneous power and temperature of the
same stretch (tree: the kernels as committed; coop: the Gluon kernel's cooperative schedule, a
third less operand traffic, slower here too). Temperature: each sustained ratio under the table
above is listed with fastgpt's GPU temperature over its timed half. Runs 195, 197 and 203 ran on
freshly started machines, run 196 on run 195's after the test suite, runs 193-194 after minutes
of probes; the ratio does not follow the temperature alone, and how much of the spread is
temperature, how much the machine, was not separated:
"""
# fastgpt's graphed steps against each compiled reference: the ratios the README states, computed.
# *-adamwcopy-* is what fastgpt-train runs without gradient accumulation (since session 8).
HEADLINE = (("triton-adamwcopy-cudagraph", "cuda-adamwcopy-cudagraph"),
            ("reference-compile", "reference-compile-cudagraphs"))
README_TRAIN_STEP_LEAD = """Run 195 (`benchmarks/results/runs/run195-train_step/`, session 26): one device call on one H100,
every configuration the issue lists (the eager reference, the reference with torch.compile and
with its CUDA graphs, fastgpt's triton backend eager and as fastgpt-train's graphed step, the cuda
backend) on the same GPU one after the other, each timed twice: in do_bench's 0.3 s window after
a warm-up (ms/step, tokens/s, MFU) and sustained, run back to back for 20 s at the GPU's power
cap, the median ~1 s slice of the second half with the SM clock, board power and temperature
meanwhile (what a training run gets; see Sustained below). fastgpt's triton backend with
torch.compile is not in it (compilation alone takes most of a configuration's 100-odd seconds);
its rows are run 191's (window) and run 203's (with the sustained rate) in RESULTS.md. The eager `triton` row is host-bound (Python and
custom-op dispatch set its time): its window and sustained rates disagree there (the table), and its
sustained run's second half was faster than its first (`sustained_first_half_ms` in its JSON):
the host's pace improves over the first tens of seconds of a process; why was not examined. fastgpt's graphed steps run their
plain GEMMs on the cuBLASLt algorithm timed fastest for each shape (kernels/gemm.py, session 17)
and replay a graph whose small memsets (cuBLAS's, before most GEMMs) are kernel nodes
(fastgpt/graph_memsets.py, session 18); each projection into the residual stream adds the stream
and its bias in its GEMM's epilogue, so the LayerNorm after it reads one tensor, and the
backward's column sums (bias and LayerNorm gradients) run in one launch after it (session 19);
the MLP's two GELU GEMMs on the warp-specialised Gluon kernel (sessions 10-12;
`triton-tritonmlp-adamwcopy-cudagraph` is the same
step with session 10's MLP), the token + position embedding in one pass whose backward sums the
tied table's two gradients (session 14), the attention backward's qkv bias partials on the tensor
cores with register caps on two attention tiles (session 15), and the LM head without its loss
pass: the logits GEMM's Gluon epilogue writes exp(logits - the target's logit) and its row sums
(session 16; the cuda row shares it, the LM head being Triton's on both backends), 8192 tokens a
chunk (session 20), the attention kernels' programs head-major (session 22), and the MLP keeping
gelu'(pre) as 8-bit codes for its backward instead of pre in bf16 (session 23;
`triton-prekept-adamwcopy-cudagraph` is the same step keeping pre), and the Gluon kernel's
forward epilogue two instructions an element shorter, its consumers taking their turn after the
tile's bias load (session 24);
`benchmarks/RESULTS.md` says what each configuration is and keeps the earlier tables.
"""
# earlier train-step tables, kept in RESULTS.md (newest first): (folder, what it was for)
TRAIN_STEP_HISTORY = [
    ("run203-train_step", "Run 203 (one H100, session 27, the final code, a freshly started machine): the headline "
     "pair and `triton-compile` (given 220 s), each with its 20 s sustained rate; the GPU's samples dated by "
     "nvidia-smi's timestamps (benchmarks/timing.dated_samples) since this run."),
    ("run197-train_step-round1", "Run 197 (one H100, session 26, the final code, a freshly started machine): the "
     "headline pair sustained for 40 s a configuration (FASTGPT_BENCH_SUSTAIN_S=40; the second half's median), "
     "fastgpt first, before the AdamW probe of `runs/logs/run197-ab.log`."),
    ("run194-train_step-round1", "Run 194 (one H100, session 26, the final code): the headline pair with its sustained "
     "rate, the reference first, after the LM head probes of `runs/logs/run194-ab.log`."),
    ("run193-train_step-round1", "Run 193 (one H100, session 26, the final code): the headline pair with its sustained "
     "rate (the first bench_train_step rows with it), fastgpt first, after the GEMM-choice probes of "
     "`runs/logs/run193-ab.log`."),
    ("run187-train_step", "Run 187 (one H100, session 24, the final code): the README's table before session 26 "
     "(every configuration but triton-compile, window timings only)."),
    ("run191-train_step-round1", "Run 191 (one H100, session 25, the final code): the headline pair, fastgpt's row "
     "first; round 1 of 2 in one call."),
    ("run191-train_step-round2", "Run 191, round 2 (the same call and machine as the pair above, the reference "
     "first, after the clock probes of `runs/logs/run191-clock.log`)."),
    ("run191-triton-compile", "Run 191 (the same call and machine): `triton-compile`, fastgpt's triton backend "
     "under torch.compile, which run 187 cut at its 100 s (compilation included), given 200 s."),
    ("run190-train_step-round1", "Run 190 (one H100, session 25, the final code): the headline pair, the "
     "reference first; round 1 of 2 in one call."),
    ("run190-train_step-round2", "Run 190, round 2 (the same call and machine, fastgpt first, after the step "
     "probes of `runs/logs/run190-modes.log`)."),
    ("run189-train_step-round1", "Run 189 (one H100, session 25, the final code): the headline pair, fastgpt "
     "first, right after the whole GPU test suite and the convergence check on the same GPU."),
    ("run188-train_step-round1", "Run 188 (one H100, session 25, the final code): the headline pair, the "
     "reference first, before the LM head probes of `runs/logs/run188-step.log`."),
    ("run180-train_step", "Run 180 (one H100, session 24): every configuration on the code before run 186 "
     "moved the Gluon kernel's turn waits (the MLP forward's epilogue already trimmed)."),
    ("run184-train_step-round1", "Run 184 (one H100, session 24, after the whole GPU test suite and the "
     "convergence check there): the headline pair on the code before run 186's turn waits, fastgpt first; "
     "round 1 of 2 in one call."),
    ("run184-train_step-round2", "Run 184, round 2 (the same call and machine as round 1 above)."),
    ("run185-train_step-round1", "Run 185 (one H100, session 24, a third machine, the code before run 186's "
     "turn waits, after bench_mlp): the headline pair, fastgpt's row first; round 1 of 2 in one call."),
    ("run185-train_step-round2", "Run 185, round 2 (the same call and machine)."),
    ("run173-train_step", "Run 173 (one H100, session 23): the README's table before session 24 trimmed "
     "the MLP forward's epilogue (bias in the accumulators' start, the code's level in four FMAs, "
     "rounded by an FADD)."),
    ("run177-train_step", "Run 177 (one H100, session 23, a third machine, session 23's final code): every "
     "configuration's table, cut short when the session's device time ran out after 5 of its 9 rows; the "
     "rows are the pytest-benchmark JSONs that came back (`pytest/`), each's extra_info as "
     "bench_train_step.py writes it."),
    ("run176-train_step-round1", "Run 176 (one H100, session 23, after the whole GPU test suite passed "
     "there): the headline pair on run 173's code, fastgpt's row first; round 1 of 2 in one call."),
    ("run176-train_step-round2", "Run 176, round 2 (the same call and machine)."),
    ("run162-train_step", "Run 162 (one H100, session 21): the README's table before session 23 (the "
     "MLP keeping pre in bf16 for its backward; the attention kernels' programs block-major)."),
    ("run157-train_step", "Run 157 (one H100, session 20): the table before session 21, with the same step "
     "kernels as run 162's; the two compare machines (run 157's ran both the compiled reference and "
     "fastgpt's graphed step slower, ours by more)."),
    ("run170-train_step-round1", "Run 170 (one H100, session 22): the headline pair, fastgpt's row first, "
     "after the attention kernels' programs became head-major (kernels/attention.HEAD_MAJOR); round 1 "
     "of 2 in one call."),
    ("run170-train_step-round2", "Run 170, round 2 (the same call and machine)."),
    ("run148-train_step", "Run 148 (one H100, session 19): the README's table before session 20 made the "
     "LM head's chunks 8192 tokens (4096 before)."),
    ("run126-train_step", "Run 126 (one H100, session 18): the README's table before session 19 moved "
     "the residual add into the projections' GEMM epilogues and deferred the backward's column sums."),
    ("run142-train_step", "Run 142 (one H100, session 19): the README's table after the residual add "
     "moved into the projections' GEMM epilogues, before the deferred column sums."),
    ("run118-train_step", "Run 118 (one H100, session 17): the README's table before the captured "
     "step's memsets became kernel nodes (fastgpt/graph_memsets.py, session 18)."),
    ("run108-train_step", "Run 108 (one H100, session 16): the README's table before kernels/gemm.py's "
     "timed cuBLASLt algorithms (session 17)."),
    ("run37-train_step", "Run 37 (one H100, session 8): every configuration of that time, the eager "
     "reference and the graphed steps without the parameter copies included, before the embedding "
     "backward kernel (session 9)."),
    ("run104-train_step", "Run 104 (one H100, session 16): the exp-logits LM head's first full table, "
     "before its epilogue in log2 units (run 105) and grad_x's row-scale kernel."),
    ("run107-train_step", "Run 107 (one H100, session 16): the headline pair, the reference first, with "
     "the LM head's GEMM in tile groups of 32 rows (slower on the GEMM by ~15 us a chunk; not kept)."),
    ("run106-train_step", "Run 106 (one H100, session 16, after the whole GPU test suite passed): the "
     "headline pair, fastgpt's row first, with session 16's committed code."),
    ("run105-train_step", "Run 105 (one H100, session 16, the call after run 104): the headline pair, "
     "the reference first, with the LM head's exp epilogue in log2 units (~20 us a chunk faster)."),
    ("run93-train_step", "Run 93 (one H100, session 15): the README's table before session 16's "
     "exp-logits LM head (the logits by cuBLAS, then the persistent Gluon loss kernel's pass)."),
    ("run81-train_step", "Run 81 (one H100, session 14): the README's table before session 15's "
     "attention changes (the qkv bias partials summed across lanes and warps in the dQ kernel, no "
     "register caps on the attention tiles)."),
    ("run91-train_step", "Run 91 (one H100, session 15): the headline pair, fastgpt's row first, with "
     "the register caps on the dQ kernel's (128, 64) tiles but the bias partials still summed across "
     "lanes and warps."),
    ("run86-train_step", "Run 86 (one H100, session 14): the headline pair, the reference first, with "
     "the tied sum added into the LM head's gradient in place (GPT's add_in_place; no copy)."),
    ("run85-train_step", "Run 85 (one H100, session 14): fastgpt's row alone, with the embedding "
     "forward's device-side index check (the kernel compiled with Triton's debug flag)."),
    ("run84-train_step", "Run 84 (one H100, session 14, the machine of run 83): the headline pair with "
     "the embedding backward's 256 x 64 long-run tile (the default since), fastgpt's row first."),
    ("run82-train_step", "Run 82 (one H100, session 14, another machine): the headline pair again, the "
     "reference first, with run 81's code (the tied sum in a copy: an in-place variant's ownership "
     "test did not pass on this torch build and was removed after)."),
    ("run77-train_step", "Run 77 (one H100, session 13): the README's table before session 14's "
     "embedding changes (the position add fused into the lookup, the tied table's gradients summed "
     "by the lookup's backward, block 0's input gradient by its add+LayerNorm)."),
    ("run80-train_step", "Run 80 (one H100, session 13, the call after run 79, on a freshly started machine): "
     "the headline pair once more, the reference first."),
    ("run74-train_step", "Run 74 (one H100, session 12): the README's table before session 13's "
     "Gluon loss kernel."),
    ("run67-train_step", "Run 67 (one H100, session 11): the README's table before session 12's "
     "five-slot Gluon ring, dK/dV tile and the loss kernel's barrier."),
    ("run65-train_step", "Run 65 (one H100, session 11): the Gluon kernel's epilogue on tanh.approx, "
     "before its bias-gradient sums were made asynchronous."),
    ("run62-train_step", "Run 62 (one H100, session 11): both GELU GEMMs on the Gluon kernel first "
     "timed in the step, its GELU still by exp and a division."),
    ("run54-train_step", "Run 54 (one H100, session 9): the README's table before the Gluon MLP "
     "kernel, with fastgpt's embedding backward."),
    ("run56-train_step", "Run 56 (one H200, session 10): c_fc's forward alone on the Gluon kernel "
     "(`triton-gluonfc-adamwcopy-cudagraph`), no faster in the step then."),
    ("run51-train_step", "Run 51 (one H100): the step with the second, per-position embedding "
     "backward kernel, slower than PyTorch's and replaced before run 54."),
    ("run50-train_step", "Run 50 (one H100): the step with the first embedding backward kernel "
     "(a program per four table rows), slower than PyTorch's."),
    ("run49-train_step", "Run 49 (one H100, session 9, after its changes): the headline pair again, "
     "with `triton-compile` (torch.compile of the triton-backend model without CUDA graphs), whose "
     "peak memory now sits below reference-compile's: run 28's peak no longer reproduces "
     "(run 47: no growth over 40 steps, runs/logs/run47-triton-compile-40-steps.log; "
     "benchmarks/memory_peaks.py, run 48: the same live set at the peak as the eager triton step). Its time is host-bound and moves from call to call (run 47 timed it "
     "alone: runs/run47-train_step-triton-compile.json)."),
    ("run38-train_step", "Run 38 (one H100, the call after run 37): the headline pair once more, "
     "after the GPU tests and a 60-step `fastgpt-train --preset gpt2` in the same call, to show how "
     "far one configuration moves from call to call."),
    ("run34-train_step", "Run 34 (one H100): the AdamW step writing the bf16 parameter copies "
     "(`*-adamwcopy-*`) first timed, beside the same graphed steps without it."),
    ("run31-train_step", "Run 31 (one H100): the README's table of session 7 (the c_attn and c_proj "
     "bias gradients in the attention backward and the add+LayerNorm; the `*-biassum-*` rows compute "
     "each by a column sum, as session 6's step did)."),
    ("run32-train_step", "Run 32 (one H100): run 31's pair timed again in the next call."),
    ("run30-train_step", "Run 30 (one H100): the bias-gradient placements first measured; every "
     "fastgpt row here ran with a cross-entropy variant (one exponential an element, kept in fp16) "
     "that turned out 0.39 ms slower and was dropped before run 31."),
    ("run29-train_step", "Run 29 (2 x H200, the card the device tool lent for an H100 call): "
     "`fuse_qkv_bias_grad` first timed (`*-qkvbias-*`, then off by default), and "
     "`triton-compile-cudagraphs` first measured (GPU 1)."),
    ("run28-train_step", "Run 28 (2 x H100): `torch.compile` of the triton-backend model "
     "(`triton-compile`), measured for the first time once fastgpt bounded an inductor error message "
     "that had kept it compiling for minutes (fastgpt.ops.dispatch.bound_inductor_operator_messages); "
     "slower than its CUDA graph and 12.2 GiB (why was not examined)."),
    ("run26-train_step", "Run 26: the README's table of session 6, 2 x H100 timing at once (the GPU "
     "column), every configuration of that time; c_attn's bias gradient by a column sum, c_proj's "
     "in their GEMMs."),
    ("run24-train_step", "Run 24: the cuda backend's MLP with cuBLASLt's DGELU epilogue alone "
     "(`cuda-cublaslt_dgelu-cudagraph`; the cuda default since), `cuda-cudagraph` then the forward's "
     "epilogue only."),
    ("run23-train_step", "Run 23: the README's table of session 5, all rows on one GPU while the test "
     "suite ran on the other; `cuda-cudagraph` then \"cublaslt_forward\"."),
]
SCALING_RUN = "run44-scaling"
CONVERGENCE_RUN = "run196-convergence.json"
SCALING_NOTE = """The val loss column is each run's own: 300 steps of 16k (1 GPU) or 32k (2 GPUs) tokens pass
over Tiny Shakespeare's 304k training tokens 16 or 32 times, so the 2-GPU run overfits further.
The loss check compares like with like: the 2-GPU run against one GPU trained on the same global
batch (the same 64 sequences a step, concatenated or as 2 accumulated micro-steps). The eager
runs scale worse than the graphed ones: eager DDP all-reduces gradient buckets during the
backward, each launch paid on the host, where the graphed step averages once inside its graph.
Session 4's run (2 H100s, before the bias kernels and the parameter copies) stays in
benchmarks/results/runs/run19-scaling/."""

HEADER = """# GPU results

Each op table is `python benchmarks/report.py FILE` of the committed pytest-benchmark JSON named
above it; this file is regenerated by `python benchmarks/results.py`. `median ms` is the reported
time: a CUDA-graph replay where the JSON's extra_info `timing` says so (runs 4 and later), else
eager; `eager ms` is the plain do_bench median of the same callable. NOTES.md has the floors and
the log of variants.
"""

OPS_SUMMARY_NOTE = f"""## Every fused op against what a user would otherwise run (run 160, session 21; attention run 175, session 23; the MLP run 185, session 24)

One H100 80GB HBM3, torch 2.11.0+cu130, triton 3.6.0: every op benchmark file run on session 21's
code (`results/runs/{OPS_RUN}-*.json`; command `runs/logs/{OPS_RUN}.sh`), attention's again on
session 23's (`results/runs/{ATTENTION_RUN}`, another H100; command `runs/logs/run175.sh`) and the
MLP's on session 24's (`results/runs/{MLP_RUN}`, another H100; command `runs/logs/run185.sh`),
their tables first below; CUDA-graph replays, do_bench
medians; written by `results.py` from those files (OP_SUMMARY names the rows). Above 1x fastgpt is faster. Where it is not: attention's forward against cuDNN's (on
either layout), and its forward+backward against cuDNN's on contiguous tensors at T 2048 (at T 512
ours is the faster since the head-major order, 0.90 against 1.02 ms; on the model's qkv views
cuDNN's backward is the slower). The standalone bias-gradient column sum (which the graphed
training step does not run: its bias gradients come out of other kernels' tiles) was behind
torch.compile's reduction in run 160 and is level with it since its loads are pipelined (its
rows here are run 164's, `results/runs/{COLUMN_SUM_RUN}`).
"""

TRAIN_STEP_NOTE = """`results/runs/run195-train_step/*.json`: one row per configuration, written by
bench_train_step.py as each finished (FASTGPT_BENCH_OUT), all from one device call on one H100
(torch 2.11.0+cu130, triton 3.6.0), one after the other; their pytest-benchmark JSONs are in
`pytest/` beside them (`triton-compile` is not in run 195: its rows are run 191's and run 180's,
below). Since run 193 each row also has its sustained rate: the step back to back for 20 s, the
median ~1 s slice of the second half, with the SM clock, power and temperature of that half
(timing.sustained). `*-cudagraph` is the whole step replayed as one CUDA graph
(fastgpt.cuda_graph.GraphedTrainStep, fastgpt-train's default on a GPU; for fastgpt's
backends it also casts the parameters to bf16 in one multi-tensor copy); `*-compile-cudagraphs` is
torch.compile's own CUDA graphs (mode="reduce-overhead"). Bias gradients: fastgpt's rows take
c_attn's from the attention backward and each c_proj bias's from the next LayerNorm's backward
(the defaults since session 7; since session 19 c_proj adds the bias, with the residual, in its
GEMM's epilogue, and the norm returns only the gradient); `*-biassum-*` computes each by a
column sum, as session 6's step did; the reference rows run nanoGPT's arrangement.
`*-adamwcopy-cudagraph` runs the model on persistent bf16 copies of the parameters that the AdamW
step writes (fastgpt.ops.adamw: one launch reads each fp32 parameter, its bf16 gradient and both
moments, clipping folded in as a gradient scale): fastgpt-train's step without gradient
accumulation since session 8. `cuda-*` run
the cuda backend: its MLP on cuBLASLt's bias + GELU and GELU-gradient epilogues. Since run 50
fastgpt's rows take the token and position tables' gradients from fastgpt's embedding backward
(kernels/embedding.py), the reference rows from PyTorch's; since run 81 the lookup adds the
position table in the same pass, and its backward adds its rows into (a copy of) the tied LM
head's gradient, where autograd had zero-filled one table and added two. Since run 62 the triton backend's MLP
runs c_fc's forward and the backward's dh GEMM (with gelu' and the c_fc bias partials) on
kernels/mlp_gluon.py's warp-specialised kernel (MLPOptions' default on Hopper;
`triton-tritonmlp-*` keeps session 10's Triton GEMM and cuBLAS dh + elementwise pass), and the
loss's backward scales and casts its stored gradients in one pass each. Since run 93 the
attention dQ kernel sums c_attn's bias partials on the tensor cores, and the autotuner's lists
hold two attention tiles under register caps (maxnreg). Since run 104 the LM head writes
exp(logits - the target's logit) from its GEMM's epilogue (no loss pass); since run 118 the graphed
steps' plain GEMMs run on kernels/gemm.py's timed cuBLASLt choices; since run 157 the LM
head's chunks are 8192 tokens (4096 before); since run 160 each row's peak memory leaves out what
was still allocated when it began (benchmarks/timing.peak_memory_gib); since run 170 the attention
kernels' programs are head-major; since run 173 the triton backend's MLP keeps gelu'(pre) as 8-bit
codes where its activations are bf16 (`triton-prekept-*` keeps pre in bf16, as before). The eager reference is
GPU-bound; fastgpt's eager rows (`triton`, and `triton-compile`, torch.compile without CUDA graphs)
are host-bound: their Python and custom-op dispatch, not the GPU, set their time (41-76 ms in
runs 16-27 and 116-118). Command per configuration:
`FASTGPT_BENCH_OUT=DIR pytest "benchmarks/bench_train_step.py::test_train_step[CONFIG]" --benchmark-only`.
"""


def train_step_rows(folder: Path) -> list[tuple[str | None, dict]]:
    """(GPU, row) of every configuration's JSON in `folder`, or in its gpu<N>/ subfolders when one
    call timed configurations on several GPUs at once (GPU None: one GPU), in CONFIG_ORDER."""
    gpus = sorted(p for p in folder.glob("gpu*") if p.is_dir())
    sources = [(p.name.removeprefix("gpu"), p) for p in gpus] or [(None, folder)]
    found = [(gpu, json.loads(f.read_text())) for gpu, path in sources for f in sorted(path.glob("*.json"))]
    return sorted(found, key=lambda item: (CONFIG_ORDER.index(item[1]["config"]), item[0] or ""))


def train_step_table(folder: Path) -> str:
    rows = train_step_rows(folder)
    with_gpu = any(gpu is not None for gpu, _ in rows)
    # the sustained rate (bench_train_step.SUSTAIN_S) where the run measured it (since run 193)
    with_sustained = any("sustained_ms" in r for _, r in rows)
    gpu_head, gpu_rule = ("GPU | ", "---|") if with_gpu else ("", "")
    # J/step: the sustained ms times the board power meanwhile (at the power cap the step's time is
    # its energy over the capped power)
    sustained_head, sustained_rule = (" sustained ms/step | sustained tokens/s | SM clock MHz, W, C | J/step |",
                                      "---|---|---|---|") if with_sustained else ("", "")
    lines = [f"| config | {gpu_head}device | ms/step | tokens/s | MFU | peak GiB |{sustained_head}",
             f"|---|{gpu_rule}---|---|---|---|---|{sustained_rule}"]
    for gpu, r in rows:
        gpu_cell = f"{gpu} | " if with_gpu else ""
        sustained_cells = ""
        if with_sustained and "sustained_ms" in r:
            gpu_state = ", ".join(f"{r[key]:.0f}" if key in r else "?" for key in ("sm_clock_mhz", "power_w", "temperature_c"))
            joules = joules_per_step(r)
            energy = "-" if joules is None else f"{joules:.2f}"
            sustained_cells = f" {r['sustained_ms']:.2f} | {r['sustained_tokens_per_s']:,.0f} | {gpu_state} | {energy} |"
        elif with_sustained:
            sustained_cells = " - | - | - | - |"
        lines.append(f"| {r['config']} | {gpu_cell}{r['device']} | {r['median_ms']:.2f} | {r['tokens_per_s']:,.0f} | "
                     f"{r['mfu']:.1%} | {r['peak_mem_gib']:.2f} |{sustained_cells}")
    return "\n".join(lines) + "\n"


def pair_ratios_line(runs: Path, folders: list[str], key: str = "tokens_per_s") -> str:
    """HEADLINE's first pair (fastgpt's graphed step against the compiled reference) as the ratio of
    their `key` (tokens_per_s: the window's; sustained_tokens_per_s) in each of `folders` whose two
    rows have it, with the median and how many reach the issue's 1.25x; "" where none has it."""
    ours, ref = HEADLINE[0][0], HEADLINE[1][0]
    sustained = key.startswith("sustained")
    ratios = []
    for name in folders:
        rows = {r["config"]: r for _, r in train_step_rows(runs / name)}
        if key in rows[ours] and key in rows[ref]:
            # sustained: with fastgpt's GPU temperature over the timed half, where sampled
            where = f"`{name}`" + (f", {rows[ours]['temperature_c']:.0f} C"
                                   if sustained and "temperature_c" in rows[ours] else "")
            ratios.append((where, rows[ours][key] / rows[ref][key]))
    if not ratios:
        return ""
    values = [ratio for _, ratio in ratios]
    what = "sustained timings" if sustained else "timings"
    return (f"- `{ours}` against `{ref}` in {len(ratios)} {what} of the pair: "
            + ", ".join(f"{ratio:.3f}x ({where})" for where, ratio in ratios)
            + f"; median {median(values):.3f}x, {sum(v >= 1.25 for v in values)} of {len(values)} at 1.25x or more\n")


def pair_ratios_lines(runs: Path, folders: list[str]) -> str:
    """pair_ratios_line of the window's rates, then of the sustained rates where runs measured them."""
    return pair_ratios_line(runs, folders) + pair_ratios_line(runs, folders, "sustained_tokens_per_s")


SUSTAINED_LINE = re.compile(r"^(?P<config>\S+) (?P<mode>\w+): .*last third (?P<ms>[\d.]+) .*SM clock (?P<mhz>\d+) MHz, "
                            r"power (?P<w>\d+) W, temperature (?P<c>\d+) C")


def sustained_probe_line(path: Path) -> str:
    """Each configuration's sustained ms/step from a run192-sustain.py log (the last third of each 40 s
    run; several runs of a configuration by their median) and fastgpt's ratio to the reference."""
    found: dict[str, list[dict]] = {}
    for line in path.read_text().splitlines():
        match = SUSTAINED_LINE.match(line)
        if match:
            found.setdefault(f"{match['config']} ({match['mode']})", []).append(match.groupdict())
    ms = {name: median(float(m["ms"]) for m in runs) for name, runs in found.items()}
    # fastgpt's committed kernels first, its variants next, the reference last
    order = sorted(found, key=lambda name: (name.startswith(HEADLINE[1][0]), not name.endswith("(tree)")))
    cells = [f"`{name}` " + " / ".join(f"{m['ms']} ms at {m['mhz']} MHz, {m['w']} W, {m['c']} C" for m in found[name])
             for name in order]
    ours, ref = f"{HEADLINE[0][0]} (tree)", f"{HEADLINE[1][0]} (tree)"
    ratio = f"; `{HEADLINE[0][0]}` against `{HEADLINE[1][0]}` sustained: {ms[ref] / ms[ours]:.3f}x" \
        if ours in ms and ref in ms else ""
    return "; ".join(cells) + ratio + "\n"


def _pair_ratios(a: dict, b: dict) -> str:
    """Row a against row b: the ratio of their tokens/s (and of their sustained tokens/s where both
    have it) and of their peak memory."""
    sustained = f" ({a['sustained_tokens_per_s'] / b['sustained_tokens_per_s']:.3f}x sustained)" \
        if "sustained_tokens_per_s" in a and "sustained_tokens_per_s" in b else ""
    return (f"{a['tokens_per_s'] / b['tokens_per_s']:.3f}x the tokens/s{sustained}, "
            f"{a['peak_mem_gib'] / b['peak_mem_gib']:.2f}x the peak memory")


def headline(folder: Path, repeat: Path) -> str:
    """fastgpt's graphed steps against the compiled references of one run, as ratios of tokens/s and
    of peak memory, and how far the configurations timed again in `repeat` moved."""
    rows = {r["config"]: r for _, r in train_step_rows(folder)}
    lines = [f"- `{ours}` against `{ref}`: {_pair_ratios(rows[ours], rows[ref])}"
             for ours in HEADLINE[0] for ref in HEADLINE[1] if ours in rows and ref in rows]
    again = {r["config"]: r for _, r in train_step_rows(repeat)}
    moved = [f"`{c}` {again[c]['median_ms']:.2f} ms (here {rows[c]['median_ms']:.2f})" for c in again if c in rows]
    if moved:
        lines.append(f"- the same configurations in {repeat.name}: " + ", ".join(moved))
    ours, ref = HEADLINE[0][0], HEADLINE[1][0]
    if ours in again and ref in again:
        lines.append(f"- there `{ours}` against `{ref}`: {_pair_ratios(again[ours], again[ref])}")
    return "\n".join(lines) + "\n"


def convergence_line(path: Path) -> str:
    c = json.loads(path.read_text())
    graphed = c.get("max_smoothed_difference_graphed")
    graphed = "" if graphed is None else f" (with the CUDA-graphed step's arithmetic: {graphed:.4f})"
    return (f"`benchmarks/results/runs/{path.name}` ({c['device']}, torch {c['torch']}, {c['args']['steps']} steps): "
            f"max |smoothed fastgpt - reference| = {c['max_smoothed_difference']:.4f} nats{graphed}; bf16 noise of "
            f"the reference (bf16 vs fp32) = {c['bf16_noise']:.4f}; bound {c['bound']}: "
            f"{'PASS' if c['passed'] else 'FAIL'}. Command: `python benchmarks/convergence.py "
            f"--steps {c['args']['steps']}`.\n")


def scaling_section(folder: Path) -> str:
    result = json.loads((folder / "scaling.json").read_text())
    env = result["environment"]
    return (f"`benchmarks/results/runs/{folder.name}/scaling.json`: {env['device']} x {env['gpus']} (NVLink), "
            f"torch {env['torch']}, triton {env['triton']}; command `{result['command']}` (each run's own "
            "command, log and metrics file are beside it). tokens/s: the median over 25-step log intervals, "
            "the first left out; scaling efficiency against the same kind of step on 1 GPU.\n\n"
            + scaling_table(result) + "\n" + SCALING_NOTE
            + "\n![tokens/s and loss curves, 1 vs 2 GPUs](benchmarks/results/scaling.png)\n")


def code_pairs_section(runs: Path, note_text: Callable[[str], str] = lambda note: note) -> str:
    """For each code in CODE_PAIRS: its note (through note_text), its pairs' ratios, its table."""
    return "".join(note_text(note) + "\n" + pair_ratios_lines(runs, folders) + "\n"
                   + train_step_table(runs / table) + "\n" for note, folders, table in CODE_PAIRS)


def readme_train_step_section(runs: Path) -> str:
    """The README's training-step section: the tables, the plot and the convergence line."""
    return (README_TRAIN_STEP_LEAD + "\n" + train_step_table(runs / TRAIN_STEP_RUN) + "\n"
            + headline(runs / TRAIN_STEP_RUN, runs / TRAIN_STEP_FOLLOWUP_RUN) + "\n"
            + code_pairs_section(runs, _from_repository_root)
            + _from_repository_root(SUSTAINED_NOTE) + "\n"
            + sustained_probe_line(runs / SUSTAINED_PROBE_LOG) + "\n"
            + "![tokens/s and peak memory per configuration](benchmarks/results/train_step.png)\n\n"
            + "Convergence: " + convergence_line(runs / CONVERGENCE_RUN))


def main():
    runs = HERE / "results" / "runs"
    parts = [HEADER, OPS_SUMMARY_NOTE + "\n" + op_summary_table(runs)]
    for title, name in OP_RUNS:
        parts.append(f"## {title}\n\n`results/runs/{name}`\n\n" + render(json.loads((runs / name).read_text())))
    parts.append("## GPT-2 124M training step\n\n" + TRAIN_STEP_NOTE + "\n" + train_step_table(runs / TRAIN_STEP_RUN)
                 + "\n" + headline(runs / TRAIN_STEP_RUN, runs / TRAIN_STEP_FOLLOWUP_RUN)
                 + "\n" + code_pairs_section(runs)
                 + SUSTAINED_NOTE + "\n" + sustained_probe_line(runs / SUSTAINED_PROBE_LOG)
                 + "".join(f"\n### {note}\n\n`results/runs/{name}/`\n\n" + train_step_table(runs / name)
                           for name, note in TRAIN_STEP_HISTORY))
    parts.append("## Convergence: fastgpt (triton) against the reference (torch), bf16\n\n"
                 + convergence_line(runs / CONVERGENCE_RUN))
    parts.append("## Multi-GPU scaling: fastgpt-train on 1 and 2 GPUs\n\n"
                 + scaling_section(runs / SCALING_RUN).replace("](benchmarks/results/", "](results/"))
    (HERE / "RESULTS.md").write_text("\n".join(parts))
    print(f"wrote {HERE / 'RESULTS.md'}")
    # the README shows the training-step table and the convergence check, copied from the same files
    readme = HERE.parent / "README.md"
    text = replace_section(readme.read_text(), "train_step", readme_train_step_section(runs))
    text = replace_section(text, "ops", readme_ops_section(runs))
    readme.write_text(replace_section(text, "scaling", scaling_section(runs / SCALING_RUN)))
    print(f"updated {readme}")


if __name__ == "__main__":
    main()
