"""fastgpt/ops/dispatch.py: eager mode calls a custom op's Python implementation directly, and
compilers, dispatch modes and grad mode get the op; both give the same results."""
import torch

from fastgpt.ops import layernorm
from fastgpt.ops.dispatch import call_custom_op


def test_eager_calls_the_implementation_and_tracing_the_op(monkeypatch):
    calls = []

    def impl(*args):
        calls.append("impl")
        return args

    def op(*args):
        calls.append("op")
        return args

    with torch.no_grad():
        call_custom_op(op, impl, 1)
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
        call_custom_op(op, impl, 2)
        monkeypatch.undo()
        from torch._subclasses.fake_tensor import FakeTensorMode
        with FakeTensorMode():
            call_custom_op(op, impl, 3)
    call_custom_op(op, impl, 4)                    # grad mode on (a create_graph backward): the op
    assert calls == ["impl", "op", "op", "op"]


def test_op_and_implementation_agree_on_layernorm(device):
    # the op's registered implementation is the plain function: same launchers, same numbers
    x, r = torch.randn(37, 48, device=device), torch.randn(37, 48, device=device)
    w, b = torch.randn(48, device=device), torch.randn(48, device=device)
    with torch.no_grad():
        via_op = layernorm._add_layernorm_fwd_op(x, r, w, b, 1e-5, "triton")
        direct = layernorm._add_layernorm_fwd_impl(x, r, w, b, 1e-5, "triton")
    for a, c in zip(via_op, direct):
        torch.testing.assert_close(a, c, rtol=0, atol=0)
