"""fastgpt's build: the Python package (with kernels/ shipped as fastgpt.kernels) and, when
a CUDA toolchain and a CUDA-enabled torch are present, the optional extension fastgpt._C.

FASTGPT_BUILD_CUDA=0 skips the extension, =1 requires it, unset builds it when possible.
The extension needs torch at build time: `pip install --no-build-isolation -e .`.
"""
import importlib.util
import os
import shutil
import sys

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _skip(reason):
    """Skip the optional extension with one line, or fail when FASTGPT_BUILD_CUDA=1 asked for it."""
    if os.environ.get("FASTGPT_BUILD_CUDA") == "1":
        raise RuntimeError(f"FASTGPT_BUILD_CUDA=1 but the CUDA extension cannot be built: {reason}")
    print(f"fastgpt: skipping the optional CUDA extension fastgpt._C: {reason}", file=sys.stderr)
    return [], {}


def _cuda_settings():
    """Sources and flags shared with the JIT build, read from fastgpt/_cuda.py without importing
    the package (its __init__ needs the dependencies an isolated build env may lack)."""
    spec = importlib.util.spec_from_file_location("_fastgpt_cuda_settings", os.path.join(HERE, "fastgpt", "_cuda.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cuda_extensions():
    """The fastgpt._C extension and its build command, or ([], {}) with one line saying why not."""
    if os.environ.get("FASTGPT_BUILD_CUDA") == "0":
        return _skip("FASTGPT_BUILD_CUDA=0")
    if any(arg in ("egg_info", "sdist", "dist_info", "--name", "--version") for arg in sys.argv[1:]):
        return [], {}  # metadata only: nothing is compiled
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CUDAExtension
    except ImportError:
        return _skip("torch is not importable in the build environment "
                     "(install with: pip install --no-build-isolation -e .)")
    if torch.version.cuda is None:
        return _skip(f"torch {torch.__version__} is built without CUDA")
    if CUDA_HOME is None or shutil.which(os.path.join(CUDA_HOME, "bin", "nvcc")) is None:
        return _skip("nvcc was not found (set CUDA_HOME or put nvcc on PATH)")

    settings = _cuda_settings()
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", settings.DEFAULT_ARCH_LIST)
    required = os.environ.get("FASTGPT_BUILD_CUDA") == "1"

    class BuildOptionalExtension(BuildExtension):
        """BuildExtension (ninja when present) whose failure only skips the optional extension,
        unless FASTGPT_BUILD_CUDA=1."""

        def build_extension(self, ext):
            try:
                super().build_extension(ext)
            except Exception as e:
                if required:
                    raise
                print(f"fastgpt: the optional CUDA extension failed to build and is skipped ({e}); "
                      "FASTGPT_BUILD_CUDA=1 makes this an error", file=sys.stderr)

    cublaslt_includes, cublaslt_ldflags = settings.cublaslt_build_flags(CUDA_HOME)
    extension = CUDAExtension(
        "fastgpt._C",
        sources=[os.path.join("csrc", s) for s in settings.SOURCES],
        include_dirs=[os.path.join(HERE, "csrc"), *cublaslt_includes],
        extra_compile_args={"cxx": settings.CXX_FLAGS, "nvcc": settings.NVCC_FLAGS},
        extra_link_args=cublaslt_ldflags,
    )
    return [extension], {"build_ext": BuildOptionalExtension}


ext_modules, cmdclass = cuda_extensions()

setup(
    package_dir={"fastgpt": "fastgpt", "fastgpt.ops": "fastgpt/ops", "fastgpt.kernels": "kernels"},
    packages=["fastgpt", "fastgpt.ops", "fastgpt.kernels"],
    package_data={"fastgpt": ["data/*.txt", "data/gpt2/*"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
