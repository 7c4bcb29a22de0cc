"""The CUDA tests run in their own pytest invocation, under Numba's CUDA simulator, which is chosen when numba is
first imported:

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda

In any other run (the main ``pytest``) this folder is not collected: numba is already imported without the
simulator there, and this machine may have no GPU.
"""

import os

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    collect_ignore_glob = ["test_*.py"]
