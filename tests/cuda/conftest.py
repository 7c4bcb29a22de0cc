"""The CUDA tests run in their own pytest invocation, under Numba's CUDA simulator, which is chosen when numba is
first imported:

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda

or on a real GPU, without the simulator (the same tests, with the GPU's block sizes):

    METRICLOSS_CUDA_TESTS=gpu python -m pytest tests/cuda

In any other run (the main ``pytest``) this folder is not collected: numba is already imported without the
simulator there, and this machine may have no GPU.
"""

import os

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"

if not SIMULATOR and os.environ.get("METRICLOSS_CUDA_TESTS") != "gpu":
    collect_ignore_glob = ["test_*.py"]
elif SIMULATOR:
    import sys
    import threading
    import traceback

    import numpy as np
    from numba.cuda.simulator import kernelapi

    # The simulator runs each block's threads as Python threads that meet at every syncthreads barrier; with the
    # default 5 ms GIL switch interval each barrier waits for switches, and these tests run several times slower.
    sys.setswitchinterval(1e-4)

    # The simulator's shared-array allocation (numba-cuda 0.30.4, FakeCUDAShared.array) looks a block's array up
    # and creates it without a lock: two threads that both find none each create one, and one of them then reduces
    # into a private array of uninitialised memory (a wrong sum, or an out-of-bounds index read back). The same
    # allocation, keyed as the simulator keys it (the caller's file and line), under a lock.
    _allocation_lock = threading.Lock()
    _simulator_array = kernelapi.FakeCUDAShared.array

    def _locked_shared_array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:  # dynamic shared memory, or the simulator's own error
            return _simulator_array(self, shape, dtype, alignment)
        if isinstance(dtype, kernelapi.types.Type):  # a Numba type: its NumPy dtype, as the simulator does
            dtype = kernelapi.numpy_support.as_dtype(dtype)
        caller = traceback.extract_stack(sys._getframe())[-2][0:2]
        with _allocation_lock:
            if caller not in self._allocations:
                self._allocations[caller] = np.empty(shape, dtype)
            return self._allocations[caller]

    kernelapi.FakeCUDAShared.array = _locked_shared_array
