"""GPU arrays taken in place: what the GPU path does with the arrays of the library a GPU input came from.

An array exposing ``__cuda_array_interface__`` (a torch CUDA tensor, a CuPy array) is a GPU array. A loss that
takes GPU arrays (see ``docs/cuda.md`` for which) runs its kernels on numba views of their memory (no copy),
computes its GEMMs and its few reductions with the input's own library through the Python array API
(``array_api_compat.array_namespace``: ``matmul`` is cuBLAS's), and returns its gradients as arrays of the input's
kind on the input's device. Only O(B) things cross to the host: the labels (the class lists are built there), the
per-anchor totals and indices the kernels return, and the value. No array library is imported here.

Streams: kernels are launched on the stream the input's ``__cuda_array_interface__`` names (version 3 of the
interface: the producer's stream, on which its work on the array is ordered; 1 and 2 are CUDA's legacy and
per-thread default streams), so they are ordered with the library's own work without a synchronisation; the numba
views keep the arrays they view alive (numba holds the owner of the memory it was given).

A numba device array has no GEMM of its own: on a GPU it is refused by name (``torch.as_tensor`` or
``cupy.asarray`` view it without a copy). In Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) the simulator's
device arrays (``cuda.to_device``) are the GPU arrays, their memory is host memory, and NumPy's namespace stands in
for cuBLAS; the rest of the path (kernels on the device arrays, no host copies but the O(B) ones) is the one a GPU
runs.
"""

import array_api_compat
import numpy as np

from .._arrays import all_finite, is_gpu_array, numpy_dtype
from .._validation import check_float_layout
from ._cuda import cuda_module


def as_numba(a):
    """A numba device array over the GPU array ``a``'s memory (no copy); a numba device array as it is."""
    if not hasattr(a, "__cuda_array_interface__"):  # already a numba device array (the simulator's)
        return a
    if hasattr(a, "detach"):  # a torch tensor that requires grad exports no interface
        a = a.detach()
    # sync=False: the kernels run on the producer's stream, after the work that produced ``a``
    return cuda_module().as_cuda_array(a, sync=False)


def on_device(value, backend, name="embeddings"):
    """The :class:`Device` of the GPU array ``value`` (given as ``name``).

    Raises
    ------
    TypeError
        If ``backend`` names a CPU backend (GPU arrays run on the GPU: None or "cuda"), or ``value`` is a numba
        device array on a GPU (no library of its own for the GEMMs).
    ImportError, RuntimeError
        Without numba-cuda, or without a usable GPU (and no simulator).
    """
    if backend not in (None, "cuda"):
        raise TypeError(
            f"{name} is a GPU array ({type(value).__name__}), which backend={backend!r} (the CPU) does not take: "
            "leave backend at None (or 'cuda') to run on the GPU, or copy it to the host yourself"
        )
    from . import get_kernels

    get_kernels("cuda")  # numba-cuda installed, a GPU (or the simulator) usable: else a clear error
    return Device(value, name)


def _producer_stream(cuda, value):
    """The numba stream that ``value``'s ``__cuda_array_interface__`` names (numba's default stream where it
    names none)."""
    if hasattr(value, "detach"):  # a torch tensor that requires grad exports no interface
        value = value.detach()
    pointer = value.__cuda_array_interface__.get("stream")
    if pointer is None:
        return cuda.default_stream()
    if pointer in (1, 2):
        return cuda.legacy_default_stream() if pointer == 1 else cuda.per_thread_default_stream()
    return cuda.external_stream(pointer)


class Device:
    """What the engine needs to run on a GPU input: the input library's array API namespace ``xp`` and its
    ``device``, the CUDA ``kernels`` on numba views of its arrays, and the conversions between the input's arrays
    and the engine's (:meth:`array`, :meth:`output`, :meth:`to_host`).

    The engine's arrays are the library's own (torch CUDA tensors, CuPy arrays): its GEMMs and reductions are the
    library's, through ``xp``. In Numba's simulator, where device memory is host memory, they are NumPy arrays
    (``xp`` NumPy's namespace), which the kernels see as the simulator's device arrays over the same memory, so that
    the kernels take the same in-place device path as on a GPU.
    """

    def __init__(self, like, name="embeddings"):
        cuda = cuda_module()
        self.simulated = not hasattr(like, "__cuda_array_interface__")  # the simulator's device array
        if self.simulated:
            from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

            self.xp, self.device = array_api_compat.array_namespace(np.empty(0)), "cpu"
            self._view, self._stream = FakeCUDAArray, cuda.default_stream()
        elif array_api_compat.is_array_api_obj(like):
            self.xp, self.device = array_api_compat.array_namespace(like), array_api_compat.device(like)
            self._view, self._stream = as_numba, _producer_stream(cuda, like)
        else:
            raise TypeError(
                f"{name} is a numba device array, which has no GEMM of its own: pass a torch CUDA tensor or a CuPy "
                f"array (torch.as_tensor({name}, device='cuda') or cupy.asarray({name}) view it without a copy)"
            )
        from . import cuda as cuda_kernels

        self.kernels = _OnViews(cuda_kernels, self)

    def rows(self, value, name="embeddings"):
        """The GPU array ``value`` of rows (embeddings), checked as :func:`metricloss._validation.check_embeddings`
        checks a host one (finiteness by one reduction on the device; C-contiguous, as the kernels index rows), as
        the engine's array."""
        x = self.array(value)
        view = self.view(x)
        check_float_layout(view.dtype, view.shape, name, ndim=2)
        if not view.is_c_contiguous():
            raise ValueError(f"{name} must be C-contiguous on the GPU (the kernels index rows); make it so first")
        if not all_finite(x):
            raise ValueError(f"{name} must be finite; got NaN or Inf on the GPU")
        return x

    def references(self, x, value, name="ref_embeddings", against="embeddings"):
        """The GPU reference rows of a query-vs-reference batch (``x`` the queries' checked array): a GPU array with
        x's number of features and x's dtype (GPU arrays are not promoted), checked as :meth:`rows` checks, as the
        engine's array."""
        if not is_gpu_array(value):
            raise TypeError(
                f"{name} must be a GPU array, as {against} is; got {type(value).__name__}: put both on the GPU, or "
                "both on the host"
            )
        ref = self.rows(value, name)
        if ref.shape[1] != x.shape[1]:
            raise ValueError(f"{name} must have {x.shape[1]} features to match {against}; got shape {tuple(ref.shape)}")
        if numpy_dtype(ref) != numpy_dtype(x):
            raise TypeError(
                f"{name} must have the dtype of {against}, {numpy_dtype(x)}, on the GPU (where nothing is promoted); "
                f"got {numpy_dtype(ref)}"
            )
        return ref

    def array(self, value):
        """A GPU array of the input's kind as the engine's array: the library's (a torch tensor detached), or in
        the simulator a NumPy copy of the simulated device memory."""
        if self.simulated:
            return value.copy_to_host()
        return value.detach() if hasattr(value, "detach") else value

    def output(self, array):
        """The engine's array as an array of the input's kind (in the simulator: a device array again)."""
        return cuda_module().to_device(array) if self.simulated else array

    def to_host(self, value):
        """A GPU array (O(B) things: labels) copied to a new NumPy array."""
        host = as_numba(value).copy_to_host(stream=self._stream)
        self._stream.synchronize()
        return host

    def view(self, array):
        """A numba device array over the engine's array's memory (no copy)."""
        return self._view(array)

    def allocate(self, shape, dtype):
        """A new device array of the library (its allocator: torch's caching allocator, CuPy's pool), as a view."""
        if self.simulated:
            return self.view(np.empty(shape, dtype))
        return self.view(self.xp.empty(shape, dtype=getattr(self.xp, np.dtype(dtype).name), device=self.device))

    def from_view(self, view):
        """A numba device array a kernel returned, as the engine's array (the library's over the same memory; in the
        simulator a NumPy copy)."""
        return view.copy_to_host() if self.simulated else self.xp.asarray(view, device=self.device)


class _OnViews:
    """The CUDA kernel module on a :class:`Device`'s arrays: each function sees numba views of the engine's arrays
    (in tuples too), runs within ``launching_on`` the input's stream and the library's allocator, and returns the
    device arrays it makes as the engine's arrays (host results, O(B) totals and indices, as they are)."""

    def __init__(self, module, device):
        self._module, self._device = module, device

    def __getattr__(self, name):
        function = getattr(self._module, name)
        device = self._device

        def on_views(*args, **kwargs):
            views = {}  # one view per array: a kernel tells "out is d" by identity

            def viewed(value):
                if isinstance(value, tuple):  # the deferred conversion's arrays; a named tuple (the classes) stays one
                    items = [viewed(item) for item in value]
                    return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
                if not _is_engine_array(value, device):
                    return value
                if id(value) not in views:
                    views[id(value)] = device.view(value)
                return views[id(value)]

            with self._module.launching_on(device._stream, device.allocate):
                result = function(*(viewed(a) for a in args), **{k: viewed(v) for k, v in kwargs.items()})
            if isinstance(result, tuple):
                return tuple(device.from_view(r) if _is_device_view(r) else r for r in result)
            return device.from_view(result) if _is_device_view(result) else result

        return on_views


def _is_engine_array(value, device):
    """An array of the engine's on the device, which the kernels read and write in place, not a small host array
    they copy themselves (class lists, indices, per-row numbers). In the simulator the engine's arrays are NumPy too:
    its rows and matrices are viewed in place, as on a GPU."""
    if device.simulated:  # 2-D: the rows and the matrices; a 1-D array (squared norms) is copied as the host's are
        return isinstance(value, np.ndarray) and value.ndim == 2
    return hasattr(value, "__cuda_array_interface__")


def _is_device_view(value):
    return hasattr(value, "copy_to_host") and not isinstance(value, np.ndarray)
