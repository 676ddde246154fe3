"""The one backend switch: names, precedence (context > set > environment > auto), resolution."""
import warnings

import pytest
import torch

import fastgpt
from fastgpt import backend
from fastgpt.backend import BackendError, Op


def test_default_is_auto_and_environment_is_read(monkeypatch):
    monkeypatch.delenv("FASTGPT_BACKEND", raising=False)
    assert fastgpt.get_backend() == "auto"
    monkeypatch.setenv("FASTGPT_BACKEND", "torch")
    assert fastgpt.get_backend() == "torch"
    monkeypatch.setenv("FASTGPT_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="unknown backend 'nonsense'"):
        fastgpt.get_backend()


def test_use_backend_nests_and_restores(monkeypatch):
    monkeypatch.setenv("FASTGPT_BACKEND", "torch")
    with fastgpt.use_backend("triton"):
        assert fastgpt.get_backend() == "triton"
        with fastgpt.use_backend("cuda"):
            assert fastgpt.get_backend() == "cuda"
        assert fastgpt.get_backend() == "triton"
    assert fastgpt.get_backend() == "torch"
    with pytest.raises(ValueError):
        with fastgpt.use_backend("jax"):
            pass


def test_set_backend_beats_environment(monkeypatch):
    monkeypatch.setenv("FASTGPT_BACKEND", "torch")
    token = backend._selected.set(None)
    try:
        fastgpt.set_backend("triton")
        assert fastgpt.get_backend() == "triton"
    finally:
        backend._selected.reset(token)


def test_auto_resolves_to_torch_on_cpu():
    with fastgpt.use_backend("auto"):
        assert backend.resolve("cpu") == "torch"


def test_triton_on_cpu_needs_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with fastgpt.use_backend("triton"), pytest.raises(BackendError, match="TRITON_INTERPRET=1"):
        backend.resolve("cpu")


def test_cuda_backend_on_cpu_is_a_clear_error():
    with fastgpt.use_backend("cuda"), pytest.raises(BackendError, match="CUDA tensors"):
        backend.resolve("cpu")


def test_op_dispatch_and_fallback_chain():
    op = Op("demo")
    op.register("torch")(lambda x: ("torch", x))
    op.register("triton")(lambda x: ("triton", x))
    assert op.implementation("cuda")(1) == ("triton", 1)     # cuda falls back to triton
    with fastgpt.use_backend("torch"):
        assert op(2, device=torch.device("cpu")) == ("torch", 2)
    lonely = Op("lonely")
    lonely.register("torch")(lambda: None)
    with pytest.raises(BackendError, match="no implementation for backend 'triton'"):
        lonely.implementation("triton")
    with pytest.raises(ValueError):
        op.register("tpu")


def test_auto_runs_torch_where_the_kernels_cannot_take_the_arguments(monkeypatch):
    op = Op("demo")
    op.register("torch")(lambda x: ("torch", x))
    op.register("triton", unsupported=lambda x: "x is odd" if x % 2 else None)(lambda x: ("triton", x))
    monkeypatch.setattr(backend, "_resolve_device_type", lambda device_type: "triton")   # as on a GPU
    cpu = torch.device("cpu")
    with fastgpt.use_backend("auto"):
        assert op(2, device=cpu) == ("triton", 2)
        with pytest.warns(RuntimeWarning, match="demo runs on the torch backend here: x is odd"):
            assert op(3, device=cpu) == ("torch", 3)
        with warnings.catch_warnings():
            warnings.simplefilter("error")                  # said once
            assert op(5, device=cpu) == ("torch", 5)
    with fastgpt.use_backend("triton"):                     # chosen by name: no fallback
        assert op(3, device=cpu) == ("triton", 3)


def test_auto_attention_with_an_unsupported_head_dim_runs_the_reference(monkeypatch):
    from fastgpt.ops import attention
    monkeypatch.setattr(backend, "_resolve_device_type", lambda device_type: "triton")
    qkv = torch.randn(1, 5, 3, 2, 8)                         # head dim 8: no Triton kernel
    with fastgpt.use_backend("auto"), pytest.warns(RuntimeWarning, match="head dims"):
        out = fastgpt.flash_attention_qkvpacked(qkv)
    assert torch.allclose(out, attention.attention_qkvpacked_reference(qkv, True, 8 ** -0.5, 0.0))
    with fastgpt.use_backend("triton"), pytest.raises(ValueError, match="head dim 8 is not supported"):
        fastgpt.flash_attention_qkvpacked(qkv)
