"""PyTorch adapter: any metricloss loss as a differentiable PyTorch operation.

>>> import torch
>>> import metricloss
>>> from metricloss.adapters.torch import wrap
>>> loss = wrap(metricloss.triplet_loss, mining="hard", margin=0.5)
>>> x = torch.randn(8, 4, dtype=torch.float64, requires_grad=True)
>>> value = loss(x, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
>>> value.backward()
>>> x.grad.shape
torch.Size([8, 4])

How it works: the wrapped loss is a ``torch.library.custom_op`` whose forward runs metricloss on the tensors'
NumPy views (CPU tensors, no copy) and returns the value and the analytic gradients; ``register_autograd``'s backward
multiplies the saved gradients by the incoming cotangent, and ``register_fake`` gives shapes to ``torch.compile``
(``fullgraph=True`` works once the wrapped loss has been called eagerly with the same kinds of arguments: that call
registers the op for its calling structure, which a compiled region cannot do). Supported: CPU tensors, float32 and
float64; a gradient for each input the loss differentiates (integer labels, boolean relevance and float targets such
as ``y`` in {−1, 1} get none). CUDA tensors go to the loss as numba views of their memory (no copy; the ``[cuda]``
extra): a loss that takes GPU arrays (``triplet_loss``, ``contrastive_loss``, the lifted structure losses; see
docs/cuda.md) runs on the GPU on torch's current stream and its gradients come back as CUDA tensors over the memory
it wrote; any other loss refuses them by name. Not supported: double backward (the gradient is computed analytically
once; ``create_graph=True`` raises).
"""

import itertools

try:
    import torch
except ImportError:  # pragma: no cover - exercised only without torch
    raise ImportError("metricloss.adapters.torch needs PyTorch: pip install 'metricloss[torch]'") from None

import numpy as np

from ._common import call_loss, check_hyperparameters, flatten_keywords, refuse_hyperparameters_at_call

_op_numbers = itertools.count()


def _as_array(tensor, where):
    """A CPU tensor's NumPy view, a CUDA tensor's numba view (both without a copy)."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{where} must be a torch.Tensor; got {type(tensor).__name__}")
    if tensor.device.type == "cuda":
        from metricloss._kernels._gpu import as_numba

        return as_numba(tensor)
    if tensor.device.type != "cpu":
        raise ValueError(f"{where} is on {tensor.device}; the PyTorch adapter takes CPU and CUDA tensors")
    return tensor.detach().numpy()


def _as_tensor(array, like):
    """A loss's result (a float, a NumPy array, a numba device array) as a tensor of ``like``'s dtype and device;
    a device array is viewed, not copied."""
    if isinstance(array, np.ndarray | np.generic | float):
        return torch.as_tensor(np.ascontiguousarray(array) if np.ndim(array) else array, dtype=like.dtype)
    return torch.as_tensor(array, device=like.device).to(like.dtype)


def _is_float(tensor):
    return tensor.is_floating_point()


def _make_op(loss_fn, hyperparameters, n_positional, keywords):
    """A custom op for one calling structure: (list of tensors) -> (value, a gradient per float input).

    Its output has one gradient per floating-point input, zeros where the loss returns none (a float target), so
    that ``register_fake`` knows the shapes without running the loss. Which float inputs the loss differentiates is
    recorded by the forward pass, per pattern of float inputs; the backward gives the others no gradient (before
    any forward has run, as when ``torch.compile`` traces cold, they get the zeros).
    """
    name = f"metricloss::{loss_fn.__name__}_{next(_op_numbers)}"
    differentiated = {}  # (is_float per input) -> (has a gradient per input)

    @torch.library.custom_op(name, mutates_args=())
    def op(tensors: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        arrays = [_as_array(t, f"input {i}") for i, t in enumerate(tensors)]
        value, grads = call_loss(loss_fn, hyperparameters, arrays, n_positional, keywords)
        differentiated[tuple(_is_float(t) for t in tensors)] = tuple(g is not None for g in grads)
        floats = [(t, g) for t, g in zip(tensors, grads, strict=True) if _is_float(t)]
        return _as_tensor(value, floats[0][0]), [
            torch.zeros_like(t) if g is None else _as_tensor(g, t) for t, g in floats
        ]

    @op.register_fake
    def _(tensors):
        floats = [t for t in tensors if _is_float(t)]
        return floats[0].new_empty(()), [torch.empty_like(t) for t in floats]

    def setup_context(ctx, inputs, output):
        (tensors,) = inputs
        ctx.float_inputs = tuple(_is_float(t) for t in tensors)
        ctx.differentiated = differentiated.get(ctx.float_inputs, ctx.float_inputs)
        ctx.save_for_backward(*output[1])

    def backward(ctx, grad_value, _grad_of_gradients):
        if torch.is_grad_enabled():
            raise RuntimeError("metricloss's PyTorch adapter does not support double backward (create_graph=True)")
        saved = iter(ctx.saved_tensors)
        grads = [next(saved) if is_float else None for is_float in ctx.float_inputs]
        return (
            [None if g is None or not d else grad_value * g for g, d in zip(grads, ctx.differentiated, strict=True)],
        )

    op.register_autograd(backward, setup_context=setup_context)
    return op


def wrap(loss_fn, **hyperparameters):
    """Turn a metricloss loss into a differentiable PyTorch function of tensors.

    ``wrap(loss_fn, **hyperparameters)(*tensors, **tensor_keywords)`` returns the loss as a 0-d tensor; its
    gradient flows to every tensor argument the loss differentiates, positional or keyword (``ref_embeddings=``);
    float targets (``y`` in {−1, 1} or {0, 1}) get none. A keyword may be a tuple or list of tensors, such as index
    arrays mined for the batch (``triplets=(a, p, n)``).
    Hyper-parameters are bound once, here, and checked against the loss's signature at once.

    Parameters
    ----------
    loss_fn : callable
        A metricloss loss: ``loss_fn(*arrays, **hyperparameters) -> (value, grad)``.
    **hyperparameters
        Keyword arguments of ``loss_fn`` bound once (``margin=0.5``, ``mining="hard"``); refused at the call.

    Returns
    -------
    loss : callable
        ``loss(*tensors, **tensor_keywords)``: the loss as a 0-d tensor.
    """
    check_hyperparameters(loss_fn, hyperparameters)
    ops = {}

    def loss(*tensors, **tensor_keywords):
        refuse_hyperparameters_at_call(loss_fn, tensor_keywords)
        structure, keyword_tensors = flatten_keywords(tensor_keywords)
        key = (len(tensors), structure)
        if key not in ops:
            ops[key] = _make_op(loss_fn, hyperparameters, *key)
        inputs = [*tensors, *keyword_tensors]
        for i, t in enumerate(inputs):
            _as_array(t, f"argument {i}")  # device and type errors here, in the caller's frame
        if not any(_is_float(t) for t in inputs):
            raise TypeError(f"{loss_fn.__name__} needs at least one floating-point tensor to differentiate")
        return ops[key](inputs)[0]

    loss.ops = ops  # the custom ops registered so far, one per calling structure (for torch.library.opcheck)
    loss.__name__ = loss.__qualname__ = f"torch_{loss_fn.__name__}"
    loss.__doc__ = f"{loss_fn.__name__} as a differentiable PyTorch function (metricloss.adapters.torch.wrap)."
    return loss


class _GatherRows(torch.autograd.Function):
    """All-gather along the first axis; the backward keeps this rank's rows of the incoming gradient."""

    @staticmethod
    def forward(ctx, tensor):
        import torch.distributed as dist

        gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, tensor.contiguous())
        ctx.rows = tensor.shape[0]
        ctx.rank = dist.get_rank()
        return torch.cat(gathered)

    @staticmethod
    def backward(ctx, grad):
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_across_ranks(tensor):
    """Concatenate ``tensor`` (same shape on every rank) from all ranks of ``torch.distributed``, in rank order.

    Differentiable for floating-point tensors: each rank computes the loss on the whole gathered batch, so the
    gradient it keeps is that of its own rows, as pytorch-metric-learning's ``DistributedLossWrapper`` does.

    Parameters
    ----------
    tensor : torch.Tensor
        This rank's rows; the same shape on every rank.

    Returns
    -------
    gathered : torch.Tensor
        The rows of all ranks, rank 0's first.

    Raises
    ------
    RuntimeError
        If ``torch.distributed`` is not initialised.
    """
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("gather_across_ranks needs torch.distributed to be initialised (init_process_group)")
    if tensor.is_floating_point():
        return _GatherRows.apply(tensor)
    gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, tensor.contiguous())
    return torch.cat(gathered)


def distributed(loss_fn, **hyperparameters):
    """``wrap(loss_fn, **hyperparameters)`` applied to the embeddings and labels of all ranks at once.

    ``distributed(metricloss.triplet_loss, mining="hard")(embeddings, labels)`` gathers both from every rank
    (equal batch sizes), computes the loss on the concatenation, and routes the gradient back to this rank's rows:
    the value and gradients equal those of one process holding the concatenated batch. Under
    ``DistributedDataParallel``, which averages parameter gradients over ranks, multiply the loss by the world size
    to train on the full-batch gradient.

    Parameters
    ----------
    loss_fn : callable
        A metricloss loss on ``(embeddings, labels)``.
    **hyperparameters
        Keyword arguments of ``loss_fn``, bound once as in :func:`wrap`.

    Returns
    -------
    distributed_loss : callable
        ``distributed_loss(embeddings, labels)``: the loss over all ranks' rows, a 0-d tensor.
    """
    loss = wrap(loss_fn, **hyperparameters)

    def distributed_loss(embeddings, labels):
        return loss(gather_across_ranks(embeddings), gather_across_ranks(labels))

    distributed_loss.__name__ = f"distributed_{loss_fn.__name__}"
    return distributed_loss
