"""The GPT model: shapes, initial loss, learning, parity with an independent nanoGPT on the
same weights (every backend), state-dict loading (nanoGPT and Hugging Face layouts), KV-cache
generation, and clear errors for bad input."""
import math

import pytest
import torch

import fastgpt
from fastgpt.model import GPT
from fastgpt.testing import assert_rel_close
from nanogpt_reference import NanoGPT

TINY = fastgpt.GPTConfig(block_size=32, vocab_size=97, n_layer=2, n_head=2, n_embd=32, bias=True)
BACKENDS = ["torch", "triton"]


def tokens(cfg, B=3, T=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, cfg.vocab_size, (B, T or cfg.block_size), generator=g)


def test_shapes_and_initial_loss_near_uniform():
    model = GPT(TINY)
    idx = tokens(TINY)
    logits, loss = model(idx)
    assert logits.shape == (3, 1, TINY.vocab_size) and loss is None
    assert model.all_logits(idx).shape == (3, TINY.block_size, TINY.vocab_size)
    _, loss = model(idx, tokens(TINY, seed=1))
    assert loss.shape == ()
    assert abs(loss.item() - math.log(TINY.vocab_size)) < 0.3


def test_a_few_steps_lower_the_loss():
    model = GPT(TINY)
    opt = model.configure_optimizer(0.1, 3e-3, (0.9, 0.95), "cpu")
    idx = tokens(TINY, B=4)
    x, y = idx[:, :-1], idx[:, 1:]
    first = None
    for _ in range(20):
        _, loss = model(x, y)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.7 * first


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bias", [True, False])
def test_matches_hand_written_nanogpt_on_the_same_weights(backend, bias, device):
    cfg = TINY.replace(bias=bias)
    ref = NanoGPT(cfg).to(device)
    model = GPT(cfg).to(device)
    model.load_state_dict(ref.state_dict())
    idx = tokens(cfg, B=2, T=19).to(device)
    targets = tokens(cfg, B=2, T=19, seed=1).to(device)
    ref_logits = ref(idx)
    ref_loss = torch.nn.functional.cross_entropy(ref_logits.view(-1, cfg.vocab_size), targets.view(-1))
    ref_loss.backward()
    with fastgpt.use_backend(backend):
        assert_rel_close(model.all_logits(idx), ref_logits, 1e-4, "logits")
        _, loss = model(idx, targets)
        loss.backward()
    assert_rel_close(loss, ref_loss, 1e-5, "loss")
    ref_grads = dict(ref.named_parameters())
    for name, p in model.named_parameters():
        assert_rel_close(p.grad, ref_grads[name].grad, 1e-4, f"grad of {name}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("proj_bias_grad_in_layernorm", [True, False])
@pytest.mark.parametrize("fuse_qkv_bias_grad", [True, False])
def test_bias_gradient_placements_match_nanogpt(backend, proj_bias_grad_in_layernorm, fuse_qkv_bias_grad, device):
    """Where the biases' gradients are computed (c_proj's in the next add+LayerNorm, c_attn's in
    the attention backward, or each by its own column sum) changes no output or gradient: against
    nanoGPT on the same weights, every bias random (not the zeros of the init, so their values
    count in the forward too)."""
    torch.manual_seed(0)
    ref = NanoGPT(TINY).to(device)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if name.endswith(".bias"):
                p.normal_(0.0, 0.5)
    model = GPT(TINY).to(device)
    model.load_state_dict(ref.state_dict())
    for block in model.transformer.h:
        block.proj_bias_grad_in_layernorm = proj_bias_grad_in_layernorm
        block.attn.fuse_qkv_bias_grad = fuse_qkv_bias_grad
    idx = tokens(TINY, B=2, T=19).to(device)
    targets = tokens(TINY, B=2, T=19, seed=1).to(device)
    ref_logits = ref(idx)
    torch.nn.functional.cross_entropy(ref_logits.view(-1, TINY.vocab_size), targets.view(-1)).backward()
    with fastgpt.use_backend(backend):
        assert_rel_close(model.all_logits(idx), ref_logits, 1e-4, "logits")
        _, loss = model(idx, targets)
        loss.backward()
    ref_grads = dict(ref.named_parameters())
    for name, p in model.named_parameters():
        assert_rel_close(p.grad, ref_grads[name].grad, 1e-4, f"grad of {name}")


def test_forward_branch_adds_the_residual_and_leaves_only_the_bias_gradient():
    """forward_branch(x, residual) is residual + forward(x), the c_proj bias included, in every
    mode; the bias's gradient is left to the caller (returned) only without dropout in effect,
    where the bias must pass through the dropout before the add."""
    model = GPT(TINY.replace(dropout=0.1))
    x, residual = torch.randn(2, 5, TINY.n_embd), torch.randn(2, 5, TINY.n_embd)
    block = model.transformer.h[0]
    assert block.attn.forward_branch(x)[1] is None and block.mlp.forward_branch(x)[1] is None
    model.eval()
    with torch.no_grad():
        block.attn.c_proj.bias.normal_()
        block.mlp.c_proj.bias.normal_()
    for branch, bias in ((block.attn, block.attn.c_proj.bias), (block.mlp, block.mlp.c_proj.bias)):
        s, bias_grad_for = branch.forward_branch(x, residual=residual)
        assert bias_grad_for is bias
        assert_rel_close(s, residual + branch(x), 1e-6, type(branch).__name__)
        assert branch.forward_branch(x, residual=residual, leave_proj_bias_grad=False)[1] is None


def test_nanogpt_state_dict_round_trips(tmp_path):
    ref = NanoGPT(TINY)
    # a nanoGPT checkpoint saved from a torch.compile'd model carries "_orig_mod." prefixes
    state = {"_orig_mod." + k: v for k, v in ref.state_dict().items()}
    torch.save({"model": state, "model_args": {"n_head": TINY.n_head}}, tmp_path / "ckpt.pt")
    model = GPT.from_pretrained(tmp_path)
    assert model.config.n_layer == TINY.n_layer and model.config.vocab_size == TINY.vocab_size
    idx = tokens(TINY, B=2, T=11)
    assert_rel_close(model.all_logits(idx), ref(idx), 1e-5, "logits")
    again = GPT(model.config)
    again.load_state_dict(model.state_dict())
    assert torch.equal(again.all_logits(idx), model.all_logits(idx))


def test_hugging_face_layout_loads_with_conv1d_transposed(tmp_path):
    ref = NanoGPT(TINY.replace(n_embd=128, n_head=2))   # 64-wide heads, as every GPT-2
    hf = {}
    for k, v in ref.state_dict().items():
        if k == "lm_head.weight":
            continue
        if k.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")):
            v = v.t().contiguous()       # HF's Conv1D keeps (in, out)
        hf[k.removeprefix("transformer.")] = v
        if k.endswith("attn.c_attn.weight"):
            hf[k.removeprefix("transformer.").replace("c_attn.weight", "bias")] = torch.ones(1)
    torch.save(hf, tmp_path / "pytorch_model.bin")
    model = GPT.from_pretrained(tmp_path, block_size=16)
    assert model.config.block_size == 16 and model.config.n_head == 2
    idx = tokens(model.config, B=2, T=16)
    assert_rel_close(model.all_logits(idx), ref(idx), 1e-5, "logits")


@pytest.mark.parametrize("prompt_len,new_tokens", [(1, 10), (5, 60)])   # 60 > block_size: window slides
def test_kv_cache_generation_equals_generation_without_cache(prompt_len, new_tokens):
    model = GPT(TINY).eval()
    idx = tokens(TINY, B=2, T=prompt_len)
    outs = []
    for use_cache in (True, False):
        g = torch.Generator().manual_seed(123)
        outs.append(model.generate(idx, new_tokens, temperature=0.8, top_k=20, use_cache=use_cache,
                                   generator=g))
    assert outs[0].shape == (2, prompt_len + new_tokens)
    assert torch.equal(outs[0], outs[1])


def test_cached_logits_equal_full_logits():
    model = GPT(TINY).eval()
    idx = tokens(TINY, B=2, T=12)
    full = model.all_logits(idx)
    from fastgpt.ops import KVCache
    cfg = TINY
    caches = [KVCache(2, cfg.n_head, cfg.block_size, cfg.head_dim, "cpu", torch.float32)
              for _ in range(cfg.n_layer)]
    model(idx[:, :7], caches=caches)
    for t in range(7, 12):
        logits, _ = model(idx[:, t:t + 1], caches=caches)
        assert_rel_close(logits[:, 0], full[:, t], 1e-5, f"logits at {t}")


def test_sequence_longer_than_block_size_is_refused():
    model = GPT(TINY)
    with pytest.raises(ValueError, match="longer than the model's block_size"):
        model(tokens(TINY, T=TINY.block_size + 1))
    with pytest.raises(ValueError, match="longer than block_size"):
        model.all_logits(tokens(TINY, T=TINY.block_size + 1))


def test_bad_inputs_are_refused():
    model = GPT(TINY)
    with pytest.raises(ValueError, match="batch, time"):
        model(torch.zeros(5, dtype=torch.long))
    with pytest.raises(TypeError, match="integer token ids"):
        model(torch.rand(2, 5))
    with pytest.raises(ValueError, match="temperature"):
        model.generate(tokens(TINY, T=2), 3, temperature=0.0)
    with pytest.raises(FileNotFoundError):
        GPT.from_pretrained("/nonexistent/weights")


def test_config_validation_and_presets():
    with pytest.raises(ValueError, match="divisible"):
        fastgpt.GPTConfig(n_embd=100, n_head=3)
    with pytest.raises(ValueError, match="unknown model preset"):
        fastgpt.gpt_preset("gpt5")
    gpt2 = fastgpt.gpt_preset("gpt2")
    assert (gpt2.n_layer, gpt2.n_head, gpt2.n_embd, gpt2.block_size, gpt2.vocab_size) == (12, 12, 768, 512, 50304)
    assert fastgpt.gpt_preset("shakespeare-char").dropout == 0.2


def test_gpt2_small_has_124m_parameters():
    with torch.device("meta"):
        model = GPT(fastgpt.gpt_preset("gpt2", vocab_size=50257, block_size=1024))
    assert round(model.num_params(non_embedding=False) / 1e6) == 124


def test_crop_block_size():
    model = GPT(TINY)
    model.crop_block_size(8)
    assert model.transformer.wpe.weight.shape[0] == 8
    with pytest.raises(ValueError):
        model.crop_block_size(64)
