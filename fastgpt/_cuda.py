"""Loader for the optional compiled extension `fastgpt._C` (see csrc/ and issue 6).

Stub until the extension exists: `load()` returns None, so the `cuda` backend reports
that it is not built.
"""
from __future__ import annotations

BUILD_HINT = ("Build it on a machine with nvcc and a CUDA-enabled torch: "
              "FASTGPT_BUILD_CUDA=1 pip install --no-build-isolation -e .")


def load(build: bool = False):
    """Return the extension module, or None when it is not available."""
    return None
