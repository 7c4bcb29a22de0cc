"""Every CUDA kernel compiled to PTX by the real compiler, for every signature the host wrappers launch it with:
the kernel tests of each file run once per dtype with the launches recorded (each file's ``record_launches``),
and each recorded (kernel, signature) is compiled with ``cuda.compile_ptx`` in a process without the simulator,
which needs no GPU. This catches the typing errors the simulator cannot see."""

import json
import os
import subprocess
import sys

# the kernel test files beside this one (pytest puts tests/cuda on sys.path)
import test_cuda_gpu_arrays
import test_cuda_kernels
import test_cuda_lifted_kernels
import test_cuda_pair_kernels
import test_cuda_warp_kernels

from metricloss._kernels import cuda as cuda_kernels
from metricloss._kernels.cuda import _device

KERNEL_TESTS = (
    test_cuda_kernels,
    test_cuda_gpu_arrays,
    test_cuda_lifted_kernels,
    test_cuda_pair_kernels,
    test_cuda_warp_kernels,
)


def test_every_launched_signature_compiles_to_ptx(tmp_path):
    """Each kernel of cuda_kernels.KERNELS is launched by some test, and every signature it was launched with in
    either dtype compiles (a kernel on float64 keys, the bitonic sort, has one signature for both)."""
    _device._launch_log = log = []
    try:
        for dtype in test_cuda_kernels.DTYPES:
            for tests in KERNEL_TESTS:
                tests.record_launches(dtype)
    finally:
        _device._launch_log = None
    signatures = sorted(set(log))
    launched = {name for name, _ in signatures}
    assert launched == {cuda_kernels.kernel_name(k) for k in cuda_kernels.KERNELS}
    path = tmp_path / "signatures.json"
    path.write_text(json.dumps(signatures))
    script = (
        "import json, sys\n"
        "from numba import cuda\n"
        "from metricloss._kernels import cuda as k\n"
        "kernels = {k.kernel_name(f): f for f in k.KERNELS}\n"
        "for name, types in json.load(open(sys.argv[1])):\n"
        "    cuda.compile_ptx(kernels[name].py_func, f\"void({', '.join(types)})\", cc=(9, 0))\n"
        "print('compiled', sys.argv[1])\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "NUMBA_ENABLE_CUDASIM"}
    result = subprocess.run([sys.executable, "-c", script, str(path)], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-4000:]
