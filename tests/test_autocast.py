"""fastgpt.ops.autocast: the fused ops' input casts, and cast_once_forward (every parameter cast
to the autocast dtype by one multi-tensor copy, gradients cast back by another) against plain
autocast: the same loss and fp32 gradients within bf16 rounding, bf16 weights inside the model,
tied weights still tied, unused parameters without a gradient, a plain call outside autocast; and
ParameterCopies (the persistent copies an optimizer writes) made, refreshed and refused.
"""
import pytest
import torch

import fastgpt
from fastgpt.distributed import contiguous_span
from fastgpt.ops.autocast import ParameterCopies, autocast_inputs, cast_once_forward
from fastgpt.testing import REL_TOL, assert_rel_close

CONFIG = fastgpt.GPTConfig(block_size=16, vocab_size=64, n_layer=2, n_head=2, n_embd=32)


def loss_and_grads(model, call, idx, targets, device):
    model.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        _, loss = call(model, idx, targets)
    loss.backward()
    return loss, {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("fuse_qkv_bias_grad", [False, True])
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_matches_plain_autocast(backend, fuse_qkv_bias_grad, device):
    """fuse_qkv_bias_grad too: c_attn's bias gradient from the attention, through the cast copies."""
    if backend == "triton" and device.type == "cpu":
        pytest.skip("bf16 tl.dot is wrong in the Triton interpreter")
    torch.manual_seed(0)
    model = fastgpt.GPT(CONFIG).to(device)
    for block in model.transformer.h:
        block.attn.fuse_qkv_bias_grad = fuse_qkv_bias_grad
    idx, targets = (torch.randint(0, 64, (3, 16), device=device) for _ in range(2))
    with fastgpt.use_backend(backend):
        ref_loss, ref = loss_and_grads(model, lambda m, *a: m(*a), idx, targets, device)
        loss, got = loss_and_grads(model, cast_once_forward, idx, targets, device)
    assert_rel_close(loss, ref_loss, REL_TOL[torch.bfloat16], "loss")
    for name, g in got.items():
        assert g.dtype == torch.float32, name
        assert_rel_close(g, ref[name], REL_TOL[torch.bfloat16], name)
    assert model.lm_head.weight is model.transformer.wte.weight   # still tied after the call


def test_gradients_are_slices_of_one_buffer_that_accumulation_keeps(device):
    """What lets a multi-GPU graphed step all-reduce them as one tensor, without copies."""
    torch.manual_seed(0)
    model = fastgpt.GPT(CONFIG).to(device)
    idx, targets = (torch.randint(0, 64, (3, 16), device=device) for _ in range(2))
    with fastgpt.use_backend("torch"):
        _, grads = loss_and_grads(model, cast_once_forward, idx, targets, device)
        flat = contiguous_span(list(grads.values()))
        assert flat is not None and flat.numel() == sum(p.numel() for p in model.parameters())
        first = {n: g.clone() for n, g in grads.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16):    # a second micro-step accumulates
            cast_once_forward(model, idx, targets)[1].backward()
    for name, p in model.named_parameters():
        assert p.grad.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr(), name
        torch.testing.assert_close(p.grad, 2 * first[name], msg=name)


def test_model_sees_bf16_parameters_and_tied_weights_stay_tied(device):
    model = fastgpt.GPT(CONFIG).to(device)
    seen = {}

    def record(module, args):
        seen["c_attn"] = module.attn.c_attn.weight.dtype
        seen["tied"] = model.lm_head.weight is model.transformer.wte.weight
    model.transformer.h[0].register_forward_pre_hook(record)
    idx = torch.randint(0, 64, (2, 8), device=device)
    with fastgpt.use_backend("torch"), torch.autocast(device.type, dtype=torch.bfloat16):
        cast_once_forward(model, idx, idx)
    assert seen == {"c_attn": torch.bfloat16, "tied": True}
    assert model.transformer.h[0].attn.c_attn.weight.dtype == torch.float32   # swapped back


def test_unused_parameter_gets_no_gradient(device):
    model = torch.nn.ModuleDict({"used": torch.nn.Linear(4, 4), "unused": torch.nn.Linear(4, 4)}).to(device)
    model.forward = lambda x: model["used"](x)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        cast_once_forward(model, torch.randn(2, 4, device=device)).float().sum().backward()
    assert model["used"].weight.grad.dtype == torch.float32
    assert model["unused"].weight.grad is None


def test_plain_call_outside_autocast(device):
    torch.manual_seed(0)
    model = fastgpt.GPT(CONFIG).to(device)
    idx = torch.randint(0, 64, (2, 8), device=device)
    with fastgpt.use_backend("torch"):
        assert torch.equal(cast_once_forward(model, idx, idx)[1], model(idx, idx)[1])


def test_autocast_inputs_casts_floating_tensors_only(device):
    x, ids = torch.randn(2, device=device), torch.arange(2, device=device)
    assert autocast_inputs(x, ids, None) == (x, ids, None)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        cx, cids, none = autocast_inputs(x, ids, None)
    assert (cx.dtype, cids.dtype, none) == (torch.bfloat16, torch.int64, None)


def test_parameter_copies_follow_a_refresh_and_refuse_half_parameters(device):
    """ParameterCopies: one bf16 leaf per trainable parameter (the tied embedding once), equal to
    the parameter cast; refresh() brings them back in line after the parameters change outside
    the optimizer (a loaded checkpoint); fp16/bf16 parameters are refused."""
    model = fastgpt.GPT(CONFIG).to(device)
    copies = ParameterCopies(model, torch.bfloat16)
    assert len(copies.copies) == len(list(model.parameters()))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    assert not all(torch.equal(c, p.to(torch.bfloat16)) for c, p in zip(copies.copies, copies.params))
    copies.refresh()
    for c, p in zip(copies.copies, copies.params):
        assert c.dtype == torch.bfloat16 and c.requires_grad and torch.equal(c, p.detach().to(torch.bfloat16))
    with pytest.raises(ValueError, match="fp32 parameters"):
        ParameterCopies(fastgpt.GPT(CONFIG).to(device, torch.bfloat16), torch.bfloat16)
