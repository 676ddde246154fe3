"""AdamW's step with the half-precision parameter copies (fastgpt.ops.adamw, kernels/adamw.py)
against torch.optim.AdamW itself, step by step: parameters, both moments and the step count
within a relative 1e-6 (fp32: only the order of the operations differs), over tensors smaller
than a program's block, not a multiple of it and several blocks long, two param groups (weight
decay on and off), a float and a device-tensor learning rate, fp32 and bf16 gradients, a gradient
scale; copies poisoned with NaN first and equal to the updated parameters cast; a plain step()
carrying on from the fused steps; and clear errors for what it does not do."""
import pytest
import torch

import fastgpt
from fastgpt.ops.adamw import adamw_step_with_copies, clip_coefficient, step_with_copies
from fastgpt.ops.autocast import ParameterCopies, cast_once_forward
from fastgpt.testing import assert_rel_close, poison_

SHAPES = [(1,), (7, 3), (300,), (33, 40)]        # 1 element, ragged, > one interpreter block (256)
ALIGNED_SHAPES = [(16,), (48, 16), (512,)]        # sizes of 16s: the vector-access variant
BACKENDS = ["torch", "triton"]


def make(device, lr_tensor=False, shapes=SHAPES, **kwargs):
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(s, generator=g).to(device).requires_grad_() for s in shapes]
    lr = torch.tensor(3e-2, device=device) if lr_tensor else 3e-2
    groups = [{"params": params[::2], "weight_decay": 0.1}, {"params": params[1::2], "weight_decay": 0.0}]
    # a tensor learning rate: capturable on a GPU (as GraphedTrainStep sets it), else the
    # single-tensor path (torch refuses capturable on CPU, and foreach with a tensor lr)
    extra = (dict(capturable=True) if torch.device(device).type == "cuda" else dict(foreach=False)) if lr_tensor else {}
    return params, torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-6, **extra, **kwargs)


def gradients(params, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(p.shape, generator=g).to(p.device, dtype) for p in params]


def check_states(ours, ref, params_ours, params_ref, tol=1e-6):
    for i, (p, q) in enumerate(zip(params_ours, params_ref)):
        assert_rel_close(p.detach(), q.detach(), tol, f"param {i}")
        for key in ("exp_avg", "exp_avg_sq"):
            assert_rel_close(ours.state[p][key], ref.state[q][key], tol, f"{key} {i}")
        assert ours.state[p]["step"].item() == ref.state[q]["step"].item()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("lr_tensor", [False, True], ids=["lr_float", "lr_tensor"])
@pytest.mark.parametrize("grad_dtype", [torch.float32, torch.bfloat16], ids=str)
def test_matches_torch_adamw_step_by_step(backend, lr_tensor, grad_dtype, device):
    params, optimizer = make(device, lr_tensor)
    ref_params, ref_optimizer = make(device, lr_tensor)
    for step in range(3):
        grads = gradients(params, step, grad_dtype)
        copies = [poison_(torch.empty(p.shape, dtype=torch.bfloat16, device=device)) for p in params]
        with fastgpt.use_backend(backend):
            adamw_step_with_copies(optimizer, params, grads, copies)
        for q, g in zip(ref_params, grads):
            q.grad = g.float()                    # what the reference's optimizer sees
        ref_optimizer.step()
        check_states(optimizer, ref_optimizer, params, ref_params)
        for i, (c, p) in enumerate(zip(copies, params)):
            assert_rel_close(c, p.detach(), 2 ** -7, f"copy {i}")      # a bf16 rounding at most
            if c.is_cuda:   # on the GPU the cast rounds to nearest, as torch's; Triton's CPU
                # interpreter truncates fp32 -> bf16 (triton 3.9, rtne asked for or not)
                assert torch.equal(c, p.detach().to(torch.bfloat16)), f"copy {i}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_aligned_sizes_take_the_vector_variant(backend, device, monkeypatch):
    from fastgpt.kernels import adamw as kernels
    seen = []
    launch = kernels.adamw_step
    monkeypatch.setattr(kernels, "adamw_step", lambda *a, **k: seen.append(k["aligned"]) or launch(*a, **k))
    params, optimizer = make(device, shapes=ALIGNED_SHAPES)
    ref_params, ref_optimizer = make(device, shapes=ALIGNED_SHAPES)
    for step in range(2):
        grads = gradients(params, step, torch.bfloat16)
        copies = [poison_(torch.empty(p.shape, dtype=torch.bfloat16, device=device)) for p in params]
        with fastgpt.use_backend(backend):
            adamw_step_with_copies(optimizer, params, grads, copies)
        for q, g in zip(ref_params, grads):
            q.grad = g.float()
        ref_optimizer.step()
        check_states(optimizer, ref_optimizer, params, ref_params)
        for i, (c, p) in enumerate(zip(copies, params)):
            assert_rel_close(c, p.detach(), 2 ** -7, f"copy {i}")
    assert seen == ([True, True] if backend == "triton" else [])


@pytest.mark.parametrize("backend", BACKENDS)
def test_grad_scale_and_no_copies(backend, device):
    params, optimizer = make(device)
    ref_params, ref_optimizer = make(device)
    grads = gradients(params, 5)
    scale = torch.tensor(0.25, device=device)
    with fastgpt.use_backend(backend):
        adamw_step_with_copies(optimizer, params, grads, None, grad_scale=scale)
    for q, g in zip(ref_params, grads):
        q.grad = g * 0.25
    ref_optimizer.step()
    check_states(optimizer, ref_optimizer, params, ref_params)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_plain_step_carries_on(backend, device):
    """Two fused steps then optimizer.step() equal three plain steps: the state is AdamW's own."""
    params, optimizer = make(device)
    ref_params, ref_optimizer = make(device)
    for step in range(3):
        grads = gradients(params, step)
        if step < 2:
            with fastgpt.use_backend(backend):
                adamw_step_with_copies(optimizer, params, grads)
        else:
            for p, g in zip(params, grads):
                p.grad = g
            optimizer.step()
        for q, g in zip(ref_params, grads):
            q.grad = g
        ref_optimizer.step()
    check_states(optimizer, ref_optimizer, params, ref_params)
    assert optimizer.state_dict()["state"].keys() == ref_optimizer.state_dict()["state"].keys()


def test_clear_errors(device):
    params, optimizer = make(device)
    grads = gradients(params, 0)
    with pytest.raises(TypeError, match="torch.optim.AdamW"):
        adamw_step_with_copies(torch.optim.SGD(params, lr=0.1), params, grads)
    _, amsgrad = make(device, amsgrad=True)
    with pytest.raises(ValueError, match="amsgrad"):
        adamw_step_with_copies(amsgrad, amsgrad.param_groups[0]["params"],
                               gradients(amsgrad.param_groups[0]["params"], 0))
    stranger = torch.zeros(3, device=device, requires_grad=True)
    with pytest.raises(ValueError, match="not in the optimizer"):
        adamw_step_with_copies(optimizer, [stranger], [torch.zeros(3, device=device)])
    with pytest.raises(ValueError, match="shaped as its parameter"):
        adamw_step_with_copies(optimizer, params[:1], [torch.zeros(2, device=device)])
    optimizer.param_groups[1]["lr"] = 1e-3
    with pytest.raises(ValueError, match="one learning rate"):
        adamw_step_with_copies(optimizer, params, grads)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_clip_coefficient_is_clip_grad_norms(dtype, device):
    params, _ = make(device)
    for max_norm in (0.5, 1e6):                     # clipping, and none (coefficient 1)
        grads = [g * 3 for g in gradients(params, 1, dtype)]
        for p, g in zip(params, grads):
            p.grad = g.float().clone()
        torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=False)
        coefficient = clip_coefficient(grads, max_norm)
        assert coefficient.dtype == torch.float32 and coefficient.shape == ()
        for p, g in zip(params, grads):
            assert_rel_close(g.float() * coefficient, p.grad, 1e-6, "clipped gradient")


@pytest.mark.parametrize("backend", BACKENDS)
def test_training_on_copies_matches_the_cast_step(backend, device):
    """A tiny GPT in bf16 autocast, 4 steps with clipping: run on ParameterCopies with the fused
    step, against the one-copy cast, clip_grad_norm_ and optimizer.step().

    After the first step every parameter agrees per tensor: the same bf16 weights reached both
    forwards (the CPU interpreter truncates where the cast rounds, hence its bound), so only AdamW's
    fp32 arithmetic differs. Later steps are compared as a whole: a 1-ulp fp32 difference can round
    a bf16 weight the other way, and AdamW divides each gradient by its own running size, so an
    element whose true gradient is zero (the k slot of c_attn's bias: softmax ignores it) takes
    lr-sized steps of opposite sign from rounding noise. On the H100 that made c_attn.bias differ
    by 11% after 4 steps while the losses agreed to 1e-4."""
    cfg = fastgpt.GPTConfig(block_size=16, vocab_size=50, n_layer=1, n_head=2, n_embd=32, bias=True)
    g = torch.Generator().manual_seed(3)
    batches = [(torch.randint(0, 50, (2, 16), generator=g).to(device),
                torch.randint(0, 50, (2, 16), generator=g).to(device)) for _ in range(4)]
    dtype = torch.bfloat16
    results = {}
    for fused in (False, True):
        torch.manual_seed(0)
        model = fastgpt.GPT(cfg).to(device)
        optimizer = model.configure_optimizer(0.1, 1e-2, (0.9, 0.95), torch.device(device).type)
        copies = ParameterCopies(model, dtype) if fused else None
        losses, after_first = [], None
        with fastgpt.use_backend(backend):
            for x, y in batches:
                with torch.autocast(torch.device(device).type, dtype=dtype):
                    _, loss = copies.forward(x, y) if fused else cast_once_forward(model, x, y)
                loss.backward()
                if fused:
                    step_with_copies(optimizer, copies, 0.5)
                    copies.zero_grad()
                else:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                losses.append(loss.item())
                if after_first is None:
                    after_first = [p.detach().clone() for p in model.parameters()]
        last = torch.cat([p.detach().flatten() for p in model.parameters()])
        results[fused] = losses, after_first, last
    exact = backend == "torch" or torch.device(device).type == "cuda"
    assert results[True][0] == pytest.approx(results[False][0], rel=1e-4 if exact else 1e-2)
    for i, (ours, ref) in enumerate(zip(results[True][1], results[False][1])):
        assert_rel_close(ours, ref, 1e-5 if exact else 5e-2, f"parameter {i} after the first step")
    assert_rel_close(results[True][2], results[False][2], 1e-2 if exact else 5e-2, "all parameters after 4 steps")
