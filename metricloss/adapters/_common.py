"""What the framework adapters share: binding hyper-parameters, calling a loss on host arrays, and stand-ins for
checking arguments before a framework hands them to a callback."""

import inspect

import numpy as np


def check_hyperparameters(loss_fn, hyperparameters):
    """Raise a TypeError now, not at the first call, for a hyper-parameter the loss does not take."""
    try:
        inspect.signature(loss_fn).bind_partial(**hyperparameters)
    except TypeError as error:
        raise TypeError(f"{loss_fn.__name__}: {error}") from None


def call_loss(loss_fn, hyperparameters, arrays, n_positional, keywords):
    """``loss_fn`` on host arrays (the first ``n_positional`` positional, the rest named ``keywords``):
    the value and the tuple of gradients, one per floating-point array."""
    named = dict(zip(keywords, arrays[n_positional:], strict=True))
    value, grads = loss_fn(*arrays[:n_positional], **named, **hyperparameters)
    return value, grads if isinstance(grads, tuple) else (grads,)


def stand_in(shape, dtype):
    """An array of ``shape`` and ``dtype`` with values every loss accepts: zeros for embeddings and scores, ones
    for labels and targets (a valid target in {−1, 1} and in {0, 1}), so that running the loss's own checks on
    stand-ins catches wrong shapes, dtypes and options without the data."""
    dtype = np.dtype(dtype)
    return np.zeros(shape, dtype) if dtype.kind == "f" else np.ones(shape, dtype)
