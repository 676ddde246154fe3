"""fastgpt-train and fastgpt-sample end to end on a tiny model (through the console scripts and
in-process), the config layers (preset < file < flags), the schedule, gradient accumulation,
Ctrl-C, and a one-line error with a non-zero exit for each bad input."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fastgpt.checkpoint import load_checkpoint
from fastgpt.data import BatchSampler
from fastgpt.model import GPT
from fastgpt.sample import main as sample_main
from fastgpt.train import (TRAIN_PRESETS, TrainConfig, default_preset, learning_rate_at, main, model_config,
                           resolve_config, train, train_step)
from fastgpt.tokenizer import CharTokenizer, GPT2Tokenizer

CORPUS = Path(__file__).resolve().parents[1] / "fastgpt" / "data" / "tinyshakespeare.txt"
TINY = dict(n_layer=2, n_head=2, n_embd=32, block_size=16, batch_size=4, max_iters=6, warmup_iters=2,
            eval_interval=3, eval_iters=2, log_interval=1, sample_tokens=20, progress=False)


def tiny_config(tmp_path, corpus, **overrides) -> TrainConfig:
    settings = {**TINY, "data": str(corpus), "cache_dir": str(tmp_path / "cache"),
                "out_dir": str(tmp_path / "out"), **overrides}
    return TrainConfig(**settings)


def tiny_flags(tmp_path, corpus, **overrides) -> list[str]:
    """TINY as command-line flags."""
    cfg = {**TINY, "data": corpus, "cache_dir": tmp_path / "cache", "out_dir": tmp_path / "out", **overrides}
    flags = []
    for name, value in cfg.items():
        flag = "--" + name.replace("_", "-")
        flags += [flag if value else "--no-" + name.replace("_", "-")] if isinstance(value, bool) else [flag, str(value)]
    return flags


def console_script(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(f"console script {name} is not installed: pip install -e .")
    return found


def run_script(name, args, timeout=120, **kwargs):
    return subprocess.run([console_script(name), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


# ---- end to end ----

def test_first_step_is_reported_apart_from_the_rates(tmp_path, corpus):
    """The first step (compilation, autotuning, graph capture) gets a line of its own and is left
    out of the first log interval's rate, but not out of the training time."""
    lines = []
    result = train(tiny_config(tmp_path, corpus, log_interval=3), log=lines.append)
    first = [line for line in lines if line.startswith("first step: ")]
    assert len(first) == 1 and "not counted in the rates below" in first[0]
    assert lines.index(first[0]) < next(i for i, line in enumerate(lines) if line.startswith("step 3/6 |"))
    assert result.train_seconds >= float(first[0].split()[2])


def test_console_scripts_train_then_sample(tmp_path, corpus):
    done = run_script("fastgpt-train", tiny_flags(tmp_path, corpus))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "step 0: train loss" in out and "step 6: train loss" in out and "step 6/6 | loss" in out
    assert "final: step 6" in out and "sample:" in out and "wall time" in out
    state = load_checkpoint(tmp_path / "out")
    assert state["step"] == 6 and state["model_config"]["n_layer"] == 2

    sampled = run_script("fastgpt-sample", ["--checkpoint", tmp_path / "out", "--prompt", "ROMEO:",
                                            "--num-samples", 2, "--max-new-tokens", 15])
    assert sampled.returncode == 0, sampled.stderr
    texts = sampled.stdout.split("---------------\n")
    assert len(texts) == 3 and all(t.startswith("ROMEO:") and len(t) == len("ROMEO:") + 16 for t in texts[:2])


def test_main_in_process(tmp_path, corpus, capsys):
    assert main(tiny_flags(tmp_path, corpus, max_iters=4, tokenizer="gpt2", n_embd=32)) == 0
    out = capsys.readouterr().out
    assert "vocab 50304" in out and "final: step 4" in out
    first = load_checkpoint(tmp_path / "out")
    assert first["tokenizer"] == {"name": "gpt2"}

    # --resume with a larger max_iters continues the same run from its checkpoint's settings
    assert main(["--resume", "--out-dir", str(tmp_path / "out"), "--max-iters", "5"]) == 0
    out = capsys.readouterr().out
    assert "step 5/5" in out and "step 1/" not in out
    assert load_checkpoint(tmp_path / "out")["step"] == 5

    # an empty prompt starts from <|endoftext|> under GPT-2's BPE
    assert sample_main(["--checkpoint", str(tmp_path / "out"), "--prompt", "", "--max-new-tokens", "5",
                        "--num-samples", "1"]) == 0
    assert capsys.readouterr().out.endswith("---------------\n")


def test_metrics_file_has_each_logged_step_and_a_summary(tmp_path, corpus, capsys):
    metrics = tmp_path / "metrics" / "run.jsonl"
    metrics.parent.mkdir()
    metrics.write_text("an earlier run's line\n")      # replaced, not appended to
    assert main(tiny_flags(tmp_path, corpus, max_iters=6, log_interval=2, metrics_file=metrics)) == 0
    out = capsys.readouterr().out
    *records, summary = (json.loads(line) for line in metrics.read_text().splitlines())
    assert [r["step"] for r in records] == [2, 4, 6]
    logged = {int(s): float(v) for s, v in re.findall(r"^step (\d+)/6 \| loss ([\d.]+)", out, re.M)}
    assert {r["step"]: round(r["loss"], 4) for r in records} == logged
    assert all(r["tokens_per_s"] > 0 and r["ms_per_step"] > 0 for r in records)
    assert summary["summary"] and summary["steps"] == 6 and summary["world_size"] == 1
    assert sorted(map(int, summary["losses"])) == list(range(1, 7))
    assert summary["losses"]["6"] == records[-1]["loss"]
    assert sorted(summary["evals"]) == ["0", "3", "6"] and summary["train_config"]["max_iters"] == 6


def test_unwritable_metrics_file(tmp_path, corpus, capsys):
    (tmp_path / "a_file").write_text("")
    assert_user_error(tiny_flags(tmp_path, corpus, metrics_file=tmp_path / "a_file" / "m.jsonl"),
                      "cannot write the metrics file", capsys)


def test_sample_in_process_is_seeded(tmp_path, corpus, capsys):
    train(tiny_config(tmp_path, corpus, max_iters=2, sample_tokens=0))
    capsys.readouterr()
    argv = ["--checkpoint", str(tmp_path / "out" / "ckpt.pt"), "--max-new-tokens", "30", "--top-k", "none"]
    assert sample_main(argv) == 0
    first = capsys.readouterr().out
    assert sample_main(argv) == 0 and capsys.readouterr().out == first
    assert sample_main(argv + ["--seed", "2"]) == 0 and capsys.readouterr().out != first


def test_sample_from_pretrained_nanogpt_weights(tmp_path, capsys):
    from fastgpt.config import GPTConfig
    model = GPT(GPTConfig(block_size=16, vocab_size=50257, n_layer=1, n_head=2, n_embd=8))
    args = {"n_layer": 1, "n_head": 2, "n_embd": 8, "block_size": 16, "vocab_size": 50257, "bias": True}
    torch.save({"model": model.state_dict(), "model_args": args}, tmp_path / "ckpt.pt")
    assert sample_main(["--pretrained", str(tmp_path), "--prompt", "Hello", "--max-new-tokens", "4",
                        "--num-samples", "1"]) == 0
    assert capsys.readouterr().out.startswith("Hello")
    small = GPT(GPTConfig(block_size=16, vocab_size=65, n_layer=1, n_head=2, n_embd=8))
    torch.save({"model": small.state_dict(), "model_args": {**args, "vocab_size": 65}}, tmp_path / "ckpt.pt")
    assert sample_main(["--pretrained", str(tmp_path / "ckpt.pt")]) == 1
    assert "not GPT-2's" in capsys.readouterr().err


# ---- configuration ----

def test_presets():
    for name, cfg in TRAIN_PRESETS.items():
        cfg.validate()
        tokenizer = GPT2Tokenizer() if cfg.tokenizer == "gpt2" else CharTokenizer.from_text("abc")
        assert model_config(cfg, tokenizer).vocab_size == tokenizer.model_vocab_size, name
    cpu = TRAIN_PRESETS["cpu-char"]
    assert (cpu.model, cpu.tokenizer, cpu.dropout) == ("cpu-char", "char", None)
    gpu = model_config(TRAIN_PRESETS["shakespeare-char"], CharTokenizer.from_text("ab"))
    assert (gpu.n_layer, gpu.n_head, gpu.n_embd, gpu.block_size, gpu.dropout) == (6, 6, 384, 256, 0.2)
    gpt2 = model_config(TRAIN_PRESETS["gpt2"], GPT2Tokenizer())
    assert (gpt2.n_layer, gpt2.block_size, gpt2.vocab_size) == (12, 512, 50304)
    assert default_preset("cpu") == "cpu-char" and default_preset("cuda") == "shakespeare-char"
    assert default_preset("auto") == ("shakespeare-char" if torch.cuda.is_available() else "cpu-char")


@pytest.mark.parametrize("suffix", [".toml", ".yaml"])
def test_config_file_then_flags_win(tmp_path, suffix):
    path = tmp_path / f"run{suffix}"
    if suffix == ".toml":
        path.write_text('preset = "shakespeare-char"\nbatch-size = 7\nlearning_rate = 3e-4\ncompile = true\n'
                        'lr_decay_iters = "none"\n')
    else:
        path.write_text("preset: shakespeare-char\nbatch-size: 7\nlearning_rate: 3e-4\ncompile: true\n"
                        "lr_decay_iters: null\n")
    from fastgpt.train import build_parser
    args = vars(build_parser().parse_args(["--config", str(path), "--batch-size", "9", "--no-compile"]))
    cfg, state = resolve_config(args)
    assert state is None and cfg.model == "shakespeare-char"       # the file's preset
    assert cfg.batch_size == 9 and cfg.compile is False             # flags win over the file
    assert cfg.learning_rate == 3e-4 and cfg.lr_decay_iters is None  # the file wins over the preset
    assert cfg.max_iters == TRAIN_PRESETS["shakespeare-char"].max_iters


def test_flags_are_typed_from_the_dataclass():
    from fastgpt.train import build_parser
    args = vars(build_parser().parse_args(["--dropout", "0.25", "--no-bias", "--lr-decay-iters", "none",
                                           "--peak-flops", "1e12", "--max-iters", "7"]))
    assert args == {"dropout": 0.25, "bias": False, "lr_decay_iters": None, "peak_flops": 1e12, "max_iters": 7}


def test_learning_rate_schedule():
    cfg = TrainConfig(learning_rate=1.0, min_lr=0.1, warmup_iters=10, max_iters=110)
    lrs = [learning_rate_at(s, cfg) for s in range(120)]
    assert lrs[0] == pytest.approx(1 / 11) and lrs[9] == pytest.approx(10 / 11)
    assert lrs[10] == pytest.approx(1.0) and lrs[60] == pytest.approx(0.55) and lrs[110] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[119] == 0.1


def test_gradient_accumulation_equals_one_big_batch():
    """Two micro-batches of 4 step the model exactly as one batch of 8 (mean loss, same grads)."""
    cfg = TrainConfig(**{**TINY, "block_size": 8})
    tokenizer = CharTokenizer.from_text("abcdefghij")
    data = (torch.arange(500) % 10).numpy().astype("uint16")
    x, y = BatchSampler(data, 8, 8, seed=0).batch(0)
    losses, states = [], []
    for micro in ([(x[:4], y[:4]), (x[4:], y[4:])], [(x, y)]):
        torch.manual_seed(0)
        model = GPT(model_config(cfg, tokenizer))
        opt = model.configure_optimizer(0.1, 1e-2, (0.9, 0.99), "cpu")
        scaler = torch.amp.GradScaler("cpu", enabled=False)
        losses.append(train_step(model, opt, scaler, iter(micro), len(micro), 1e-2, 1.0, torch.autocast("cpu", enabled=False)).item())
        states.append(model.state_dict())
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    for name in states[0]:
        torch.testing.assert_close(states[0][name], states[1][name], rtol=1e-5, atol=1e-6, msg=name)


# ---- Ctrl-C ----

def test_ctrl_c_writes_a_checkpoint_then_resume_finishes(tmp_path, corpus):
    flags = tiny_flags(tmp_path, corpus, max_iters=100_000, eval_interval=100_000, sample_tokens=0)
    proc = subprocess.Popen([console_script("fastgpt-train"), *flags], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("step 3/"):
                proc.send_signal(signal.SIGINT)
                break
        rest, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGINT, "".join(lines) + rest
    assert "SIGINT: stopping after this step" in rest and "--resume" in rest and "Traceback" not in rest
    state = load_checkpoint(tmp_path / "out")
    assert 3 <= state["step"] < 1000
    steps = state["step"]
    assert main(["--resume", "--out-dir", str(tmp_path / "out"), "--max-iters", str(steps + 2)]) == 0
    assert load_checkpoint(tmp_path / "out")["step"] == steps + 2


# ---- bad input: one line on stderr, exit code 1, no traceback ----

def assert_user_error(argv, match, capsys):
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("fastgpt-train: error: ") and match in err, err


def test_unknown_preset(capsys):
    assert_user_error(["--preset", "gpt5"], "unknown preset 'gpt5'; choose one of cpu-char, shakespeare-char", capsys)


def test_missing_data_path(tmp_path, corpus, capsys):
    assert_user_error(tiny_flags(tmp_path, corpus, data=tmp_path / "missing.txt"), "does not exist", capsys)


def test_empty_data(tmp_path, corpus, capsys):
    (tmp_path / "empty.txt").write_text("")
    assert_user_error(tiny_flags(tmp_path, corpus, data=tmp_path / "empty.txt"), "the data is empty", capsys)


def test_non_utf8_data(tmp_path, corpus, capsys):
    (tmp_path / "bin.txt").write_bytes(b"\x80\x81 binary")
    assert_user_error(tiny_flags(tmp_path, corpus, data=tmp_path / "bin.txt"), "is not UTF-8 text", capsys)


def test_block_size_too_large_for_the_data(tmp_path, capsys):
    (tmp_path / "short.txt").write_text("To be, or not to be: that is the question.\n" * 3)
    flags = tiny_flags(tmp_path, tmp_path / "short.txt", block_size=32)
    assert_user_error(flags, "the val split has 13 tokens, too few for windows of block_size + 1 = 33", capsys)


def test_checkpoint_from_another_config(tmp_path, corpus, capsys):
    assert main(tiny_flags(tmp_path, corpus, max_iters=1)) == 0
    capsys.readouterr()
    assert_user_error(["--resume", "--out-dir", tmp_path / "out", "--n-layer", 3],
                      "holds a model of another config (n_layer 2 vs 3", capsys)
    assert_user_error(tiny_flags(tmp_path, corpus, max_iters=2, data=CORPUS) + ["--resume"],
                      "(vocab_size 58 vs 65", capsys)   # another corpus, another vocabulary


def test_resume_without_a_checkpoint(tmp_path, capsys):
    assert_user_error(["--resume", "--out-dir", tmp_path / "nothing"], "no checkpoint at", capsys)


def test_unwritable_output_folder(tmp_path, corpus, capsys):
    (tmp_path / "a_file").write_text("")
    assert_user_error(tiny_flags(tmp_path, corpus, out_dir=tmp_path / "a_file" / "out"),
                      "cannot write to the output folder", capsys)
    if os.geteuid() != 0:   # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert_user_error(tiny_flags(tmp_path, corpus, out_dir=locked), "Permission denied", capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_requested_without_a_gpu(tmp_path, corpus, capsys):
    assert_user_error(tiny_flags(tmp_path, corpus, device="cuda"), "asked for a GPU, but torch", capsys)


def test_bad_settings(tmp_path, corpus, capsys):
    assert_user_error(tiny_flags(tmp_path, corpus, n_head=3), "n_embd (32) must be divisible by n_head (3)", capsys)
    assert_user_error(tiny_flags(tmp_path, corpus, batch_size=0), "batch_size must be >= 1", capsys)
    (tmp_path / "bad.toml").write_text("learning_rat = 1e-3\n")
    assert_user_error(["--config", tmp_path / "bad.toml"], "unknown setting 'learning_rat'", capsys)
    (tmp_path / "bad.yaml").write_text("max_iters: many\n")
    assert_user_error(["--config", tmp_path / "bad.yaml"], "max_iters must be an int", capsys)
    assert_user_error(["--config", tmp_path / "missing.toml"], "cannot read config file", capsys)


def test_bad_flag_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--max-iters", "lots"])
    assert e.value.code == 2 and "--max-iters must be an int" in capsys.readouterr().err


def test_console_script_error_has_no_traceback(tmp_path):
    done = run_script("fastgpt-train", ["--data", tmp_path / "missing", "--out-dir", tmp_path / "out"])
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [f"fastgpt-train: error: data path '{tmp_path / 'missing'}' does not exist"]
    done = run_script("fastgpt-sample", ["--checkpoint", tmp_path / "none"])
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("fastgpt-sample: error: no checkpoint at")
