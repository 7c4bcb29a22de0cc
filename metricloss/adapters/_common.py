"""What the framework adapters share: binding hyper-parameters, calling a loss on host arrays and giving each of its
gradients to the argument it belongs to, and stand-ins for checking arguments before a framework hands them to a
callback.

Which arguments get a gradient is learned from the loss itself, not from dtypes: a loss returns one gradient per
argument it differentiates, in argument order, and those are its first floating-point arguments (a target such as
``y`` in {−1, 1} given as a float tensor comes after them and gets none).

A keyword whose value is a tuple or list of arrays (``triplets=(a, p, n)``, mined for each batch) travels as its
elements, each one more input of the framework's operation, and is regrouped for the loss: ``keywords`` below is
the calling structure :func:`flatten_keywords` returns, a (name, None) for an array and a (name, k) for a group of k.
"""

import inspect

import numpy as np

from .._vocabulary import ARRAYS, unknown_keyword_help


def check_hyperparameters(loss_fn, hyperparameters):
    """Raise a TypeError now, not at the first call, for a hyper-parameter the loss does not take (naming the one
    it means, for a word from another library: :mod:`metricloss._vocabulary`)."""
    help_for_keyword = unknown_keyword_help(loss_fn, hyperparameters)
    if help_for_keyword is not None:
        raise TypeError(help_for_keyword)
    for name, value in hyperparameters.items():
        if name in ARRAYS and isinstance(value, int | float):  # margin_loss's beta: learnable whenever given
            raise TypeError(
                f"{loss_fn.__name__}: {name} is an array argument, given to the wrapped function, not bound here: "
                f"pass {name}=tensor at each call (its gradient comes back; a tensor that does not require grad "
                "stays fixed)"
            )
    try:
        inspect.signature(loss_fn).bind_partial(**hyperparameters)
    except TypeError as error:
        raise TypeError(f"{loss_fn.__name__}: {error}") from None


def refuse_hyperparameters_at_call(loss_fn, keywords):
    """Raise a TypeError naming a keyword given to the wrapped function that is a plain Python value (a bool,
    number, string or None) rather than an array: hyper-parameters are bound once, by ``wrap``."""
    for name, value in keywords.items():
        if value is None or isinstance(value, (bool, int, float, str)):
            raise TypeError(
                f"{loss_fn.__name__}: {name}={value!r} is a hyper-parameter; the wrapped function takes arrays only, "
                f"so bind it once with wrap({loss_fn.__name__}, {name}={value!r})"
            )


def flatten_keywords(keywords):
    """The calling structure of the keyword arguments and their arrays in one flat list: a tuple or list value
    (``triplets=(a, p, n)``) is a group of arrays, (name, its length); any other value is one array, (name, None)."""
    structure, flat = [], []
    for name, value in keywords.items():
        if isinstance(value, tuple | list):
            structure.append((name, len(value)))
            flat.extend(value)
        else:
            structure.append((name, None))
            flat.append(value)
    return tuple(structure), flat


def _regrouped(items, n_positional, keywords):
    """``items`` (one per array of the call) as the loss takes them: the positional ones, and a dict of the keyword
    ones, a group's items as a tuple."""
    named, at = {}, n_positional
    for name, size in keywords:
        named[name] = items[at] if size is None else tuple(items[at : at + size])
        at += 1 if size is None else size
    return items[:n_positional], named


def _signature_order(loss_fn, n_positional, keywords):
    """The indices of the call's arrays (positional, then ``keywords`` as given) in the order of the loss's
    parameters, so that keywords given out of order still meet their gradients."""
    indices = list(range(n_positional + sum(1 if size is None else size for _, size in keywords)))
    positional, named = _regrouped(indices, n_positional, keywords)
    try:
        bound = inspect.signature(loss_fn).bind_partial(*positional, **named)
    except (TypeError, ValueError):  # no signature, or a call the loss itself will refuse
        return indices
    order = []
    for name, value in bound.arguments.items():
        kind = bound.signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            items = value
        elif kind is inspect.Parameter.VAR_KEYWORD:
            items = value.values()
        else:
            items = (value,)
        for item in items:  # a group's indices come as a tuple
            order.extend(item if isinstance(item, tuple) else (item,))
    return order


def is_floating(dtype):
    return np.issubdtype(np.dtype(dtype), np.floating)


def call_loss(loss_fn, hyperparameters, arrays, n_positional, keywords):
    """``loss_fn`` on host arrays (the first ``n_positional`` positional, the rest named ``keywords``): the value,
    and for each array its gradient, or None for an array the loss does not differentiate."""
    positional, named = _regrouped(arrays, n_positional, keywords)
    value, grads = loss_fn(*positional, **named, **hyperparameters)
    grads = grads if isinstance(grads, tuple) else (grads,)
    owners = [i for i in _signature_order(loss_fn, n_positional, keywords) if is_floating(arrays[i].dtype)]
    if len(grads) > len(owners) or any(np.shape(g) != arrays[i].shape for g, i in zip(grads, owners, strict=False)):
        raise TypeError(
            f"{loss_fn.__name__} returned gradients of shapes {[np.shape(g) for g in grads]}, which are not those of "
            f"its first {len(grads)} floating-point arguments {[arrays[i].shape for i in owners]}"
        )
    per_array = [None] * len(arrays)
    for g, i in zip(grads, owners, strict=False):
        per_array[i] = g
    return value, per_array


def stand_in(shape, dtype, *, floats_as_ones=False):
    """An array of ``shape`` and ``dtype`` with values the losses accept: ones for integer and boolean arrays (one
    class; relevant); for floating-point arrays, seeded standard-normal values (distinct rows, so that no pair
    falls in the distances' cancellation zone and takes the slow direct-difference path), or with
    ``floats_as_ones`` ones, which are also a valid target in {−1, 1} and in {0, 1}."""
    dtype = np.dtype(dtype)
    if not is_floating(dtype) or floats_as_ones:
        return np.ones(shape, dtype)
    return np.random.default_rng(0).standard_normal(shape).astype(dtype)


def check_on_stand_ins(loss_fn, hyperparameters, specs, n_positional, keywords):
    """Run the loss's own checks on stand-ins of the arrays' (shape, dtype) ``specs``, so that wrong shapes, dtypes
    or options raise in the caller's frame; return, per array, whether the loss differentiates it.

    Floating-point stand-ins are first random (cheap for every distance); a loss that refuses them (a float target
    must be in {−1, 1} or {0, 1}) is called again on ones, which every target accepts, and its error then stands.
    Integer arrays of a group (index arrays such as ``triplets=(a, p, n)``) stand in empty: no stand-in indices
    could be valid for every loss, and none index nothing.
    """
    in_group = [False] * n_positional
    for _, size in keywords:
        in_group += [False] if size is None else [True] * size

    def stand_ins(floats_as_ones):
        return [
            np.zeros((0, *shape[1:]), dtype)
            if group and not is_floating(dtype)
            else stand_in(shape, dtype, floats_as_ones=floats_as_ones)
            for (shape, dtype), group in zip(specs, in_group, strict=True)
        ]

    try:
        _, grads = call_loss(loss_fn, hyperparameters, stand_ins(False), n_positional, keywords)
    except ValueError:
        _, grads = call_loss(loss_fn, hyperparameters, stand_ins(True), n_positional, keywords)
    return [g is not None for g in grads]
