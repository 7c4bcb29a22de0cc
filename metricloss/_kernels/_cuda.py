"""The one place that imports ``numba.cuda`` (from the ``numba-cuda`` package, extra ``[cuda]``).

Everything CUDA in metricloss goes through :func:`require_cuda`, so that moving to another CUDA JIT (numba-cuda's
successor, numba-cuda-mlir) changes this file and the kernels' decorators, nothing else. The simulator is on when
the environment variable ``NUMBA_ENABLE_CUDASIM=1`` was set before numba was first imported.
"""

import importlib.util

_INSTALL = "pip install metricloss[cuda]"


def cuda_module():
    """``numba.cuda``, imported (no device needed yet: kernels are compiled when first launched).

    Raises
    ------
    ImportError
        If numba-cuda is not installed (naming ``pip install metricloss[cuda]``).
    """
    if importlib.util.find_spec("numba_cuda") is None:
        raise ImportError(f"backend='cuda' needs the numba-cuda package, which is not installed: {_INSTALL}")
    from numba import cuda

    return cuda


def require_cuda():
    """``numba.cuda``, ready to launch kernels: on a GPU, or in Numba's CUDA simulator.

    Raises
    ------
    ImportError
        If numba-cuda is not installed (naming ``pip install metricloss[cuda]``).
    RuntimeError
        If no CUDA GPU is usable and the simulator is not enabled.
    """
    cuda = cuda_module()
    if not simulator_enabled() and not cuda.is_available():
        raise RuntimeError(
            "backend='cuda' found no usable CUDA GPU (numba.cuda.is_available() is False); run on a machine with "
            "an NVIDIA GPU and driver, use backend='numba' for the CPU, or set NUMBA_ENABLE_CUDASIM=1 before "
            "importing numba to run the CUDA kernels in Numba's (slow) simulator"
        )
    return cuda


def simulator_enabled():
    """Whether numba-cuda runs kernels in its simulator (``NUMBA_ENABLE_CUDASIM=1`` at import)."""
    from numba.cuda import config

    return bool(config.ENABLE_CUDASIM)
