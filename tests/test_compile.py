"""torch.compile(fullgraph=True) over fastgpt: each fused op and the whole GPT, forward and
backward, on the torch and triton backends, with the compiled result equal to eager.

fullgraph=True raises on any graph break, so a passing test proves there is none. The compiler
backend is "aot_eager" (Dynamo + AOTAutograd, which is where the custom ops' fake
implementations and autograd wiring are exercised) because inductor's C++ build on a 2-core CPU
takes minutes for a whole model; one inductor test compiles the fused cross-entropy alone.
On a GPU a small triton-backend GPT goes through inductor too (against eager), and
benchmarks/bench_train_step.py compiles the full model with it. Importing fastgpt bounds one of
inductor's error messages, without which that compile sat for minutes (the last test here).
"""
import pytest
import torch

import fastgpt
from fastgpt.model import GPT
from fastgpt.testing import assert_rel_close

TINY = fastgpt.GPTConfig(block_size=16, vocab_size=65, n_layer=2, n_head=2, n_embd=32, bias=True)
BACKENDS = ["torch", "triton"]


def _attention(g):
    q, k, v = (torch.randn(2, 2, 9, 16, generator=g) for _ in range(3))
    return fastgpt.flash_attention, (q, k, v)


def _add_layernorm(g):
    x, r = torch.randn(2, 9, 32, generator=g), torch.randn(2, 9, 32, generator=g)
    w, b = 1 + 0.1 * torch.randn(32, generator=g), 0.1 * torch.randn(32, generator=g)

    def add_layernorm(x, r, w, b):
        y, s = fastgpt.fused_add_layernorm(x, r, w, b)
        return y * 2 + s       # both outputs carry gradient
    return add_layernorm, (x, r, w, b)


def _linear_gelu(g):
    x = torch.randn(2, 9, 32, generator=g)
    w, b = 0.2 * torch.randn(128, 32, generator=g), 0.1 * torch.randn(128, generator=g)
    return fastgpt.fused_linear_gelu, (x, w, b)


def _linear_cross_entropy(g):
    x, w = torch.randn(2, 9, 32, generator=g), 0.3 * torch.randn(65, 32, generator=g)
    targets = torch.randint(0, 65, (2, 9), generator=g)
    targets[0, ::3] = -1
    return (lambda x, w: fastgpt.fused_linear_cross_entropy(x, w, targets.to(x.device))), (x, w)


def _embedding(g):
    idx = torch.randint(0, 13, (2, 9), generator=g)
    idx[0, ::2] = 5                                      # a repeated row
    return (lambda w: fastgpt.fused_embedding(idx.to(w.device), w)), (torch.randn(13, 32, generator=g),)


def _tied_embedding(g):
    idx = torch.randint(0, 13, (2, 9), generator=g)
    idx[0, ::2] = 5

    def tied_embedding(w, positions):   # the GPT's use: lookup + positions, and the head on the table
        x, head_weight = fastgpt.fused_tied_embedding(idx.to(w.device), w, positions)
        return x @ head_weight.t()
    return tied_embedding, (torch.randn(13, 32, generator=g), torch.randn(9, 32, generator=g))


OPS = {"attention": _attention, "add_layernorm": _add_layernorm, "linear_gelu": _linear_gelu,
       "linear_cross_entropy": _linear_cross_entropy, "embedding": _embedding,
       "tied_embedding": _tied_embedding}


def _forward_backward(fn, inputs):
    inputs = [t.detach().clone().requires_grad_() for t in inputs]
    out = fn(*inputs)
    # a fixed random weighting so every output element matters to the gradient
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(out.device)
    (out * weights).sum().backward()
    return out.detach(), [t.grad for t in inputs]


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", list(OPS))
def test_op_compiles_without_graph_breaks(op, backend, device):
    fn, inputs = OPS[op](torch.Generator().manual_seed(0))
    inputs = [t.to(device) for t in inputs]
    with fastgpt.use_backend(backend):
        eager_out, eager_grads = _forward_backward(fn, inputs)
        compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
        out, grads = _forward_backward(compiled, inputs)
    assert_rel_close(out, eager_out, 1e-5, f"{op} output")
    for i, (grad, eager_grad) in enumerate(zip(grads, eager_grads)):
        assert_rel_close(grad, eager_grad, 1e-5, f"{op} grad of input {i}")


@pytest.mark.parametrize("fuse_qkv_bias_grad", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
def test_gpt_compiles_without_graph_breaks(backend, fuse_qkv_bias_grad, device):
    model = GPT(TINY).to(device)
    for block in model.transformer.h:
        block.attn.fuse_qkv_bias_grad = fuse_qkv_bias_grad     # the attention op with its optional bias input
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, TINY.vocab_size, (2, TINY.block_size), generator=g).to(device)
    targets = torch.randint(0, TINY.vocab_size, (2, TINY.block_size), generator=g).to(device)
    with fastgpt.use_backend(backend):
        _, eager_loss = model(idx, targets)
        eager_loss.backward()
    eager_grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    with fastgpt.use_backend(backend):
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
        _, loss = compiled(idx, targets)
        loss.backward()
    # the same kernels eager and compiled: equal up to the order of a few reductions
    assert_rel_close(loss, eager_loss, 1e-5, "loss")
    for name, p in model.named_parameters():
        assert_rel_close(p.grad, eager_grads[name], 1e-4, f"grad of {name}")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="inductor's GPU code generation needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "bf16-autocast"])
def test_gpt_under_inductor_on_gpu(precision):
    """The whole triton-backend GPT through inductor (torch.compile's default backend: what
    bench_train_step's triton-compile configuration runs), forward and backward, against the same
    model eager. fp32: the same kernels and cuBLAS GEMMs, so only the order of a few reductions
    differs (1e-4); under bf16 autocast inductor fuses and rounds the glue between our ops (the
    embedding sum, the casts) its own way, so bf16 rounding bounds it (2e-2)."""
    config = fastgpt.GPTConfig(block_size=64, vocab_size=96, n_layer=2, n_head=2, n_embd=128, bias=True)
    torch.manual_seed(0)
    model = GPT(config).cuda()
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, config.vocab_size, (3, 61), generator=g).cuda()    # T below block_size, ragged
    targets = torch.randint(0, config.vocab_size, (3, 61), generator=g).cuda()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision != "fp32")
    tolerance = 1e-4 if precision == "fp32" else 2e-2

    def loss_and_grads(forward):
        model.zero_grad(set_to_none=True)
        with fastgpt.use_backend("triton"), autocast:
            _, loss = forward(idx, targets)
        loss.backward()
        return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}

    eager_loss, eager_grads = loss_and_grads(model)
    loss, grads = loss_and_grads(torch.compile(model, fullgraph=True))
    assert_rel_close(loss, eager_loss, tolerance, "loss")
    for name, grad in grads.items():
        assert_rel_close(grad, eager_grads[name], tolerance, f"grad of {name}")


def test_fused_cross_entropy_under_inductor(device):
    """The cross-entropy custom op through inductor's real code generation (the path users take),
    called below the backend switch so this holds whatever the switch does under Dynamo."""
    from fastgpt.ops.cross_entropy import linear_cross_entropy_triton

    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(18, 32, generator=g), 0.3 * torch.randn(65, 32, generator=g)
    targets = torch.randint(0, 65, (18,), generator=g)
    targets[::4] = -1
    x, w, targets = x.to(device), w.to(device), targets.to(device)

    def fn(x, w):
        return linear_cross_entropy_triton(x, w, targets, -1)
    eager_out, eager_grads = _forward_backward(fn, (x, w))
    out, grads = _forward_backward(torch.compile(fn, fullgraph=True), (x, w))
    assert_rel_close(out, eager_out, 1e-5, "loss")
    for grad, eager_grad in zip(grads, eager_grads):
        assert_rel_close(grad, eager_grad, 1e-5, "gradient")


def test_inductor_operator_messages_never_stringify_ir():
    """fastgpt.ops.dispatch bounds inductor's operator messages: an IR argument is described by
    name, size and dtype, and its __str__ (exponential over a deep DAG) is never called."""
    from torch._inductor.exc import LoweringException, OperatorIssue

    class DeepNode:                       # stands in for an IR node whose str() would not finish
        __module__ = "torch._inductor.ir"

        def __str__(self):
            raise AssertionError("IRNode.__str__ called")

        def get_name(self):
            return "buf7"

        def get_size(self):
            return [16384, 768]

        def get_dtype(self):
            return torch.bfloat16

    message = OperatorIssue.operator_str("fastgpt::mlp_fwd", [DeepNode(), 0.5, [DeepNode()]], {"w": DeepNode()})
    assert "DeepNode(name=buf7, size=[16384, 768], dtype=torch.bfloat16)" in message
    assert "args[1]: 0.5" in message
    # the error inductor raises when a lowering fails builds its message the same way
    assert "buf7" in str(LoweringException(ValueError("lowering failed"), "fastgpt::mlp_fwd", [DeepNode()], {}))
