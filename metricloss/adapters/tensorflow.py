"""TensorFlow adapter: any metricloss loss as a differentiable TensorFlow function.

>>> import numpy as np
>>> import tensorflow as tf
>>> import metricloss
>>> from metricloss.adapters.tensorflow import wrap
>>> loss = wrap(metricloss.contrastive_loss, margin=1.0)
>>> x = tf.Variable(np.arange(12.0).reshape(6, 2) / 10)
>>> with tf.GradientTape() as tape:
...     value = loss(x, tf.constant([0, 0, 1, 1, 2, 2]))
>>> tape.gradient(value, x).shape
TensorShape([6, 2])

How it works: a ``tf.custom_gradient`` whose forward pass calls metricloss on NumPy arrays and returns the value and
the analytic gradients, and whose gradient function multiplies them by the upstream gradient. Eagerly the loss runs
once, on the tensors' values; inside a ``tf.function`` it runs in a ``tf.numpy_function`` (shapes restored with
``tf.ensure_shape``), after a call on stand-ins that checks the arguments and says which of them get a gradient
(where the shapes are not known until it runs, every float argument gets one: zero for a float target). Works
eagerly and inside ``tf.function``, float32 and float64.
What it costs: ``tf.numpy_function`` holds the GIL and runs on the host; a ``tf.function`` that uses it cannot be
serialised into a SavedModel (the Python callback is not part of the graph) nor compiled with XLA
(``jit_compile=True``); and second derivatives are not defined.
"""

try:
    import tensorflow as tf
except ImportError:  # pragma: no cover - exercised only without TensorFlow
    raise ImportError("metricloss.adapters.tensorflow needs TensorFlow: pip install 'metricloss[tf]'") from None

import numpy as np

from ._common import (
    call_loss,
    check_hyperparameters,
    check_on_stand_ins,
    flatten_keywords,
    refuse_hyperparameters_at_call,
)


def wrap(loss_fn, **hyperparameters):
    """Turn a metricloss loss into a differentiable TensorFlow function of tensors.

    ``wrap(loss_fn, **hyperparameters)(*tensors, **tensor_keywords)`` returns the loss as a 0-d tensor; gradients
    flow to the arguments the loss differentiates (integer labels, boolean relevance and float targets such as ``y``
    in {−1, 1} get None). A keyword may be a tuple or list of tensors, such as index arrays mined for the batch
    (``triplets=(a, p, n)``). Hyper-parameters are checked against the loss's signature here; wrong shapes, dtypes or
    options raise in the caller's frame: eagerly from the one call of the loss on the tensors' values, inside a
    ``tf.function`` from the loss's own checks run on stand-ins of the arguments' shapes (where they are known).

    Parameters
    ----------
    loss_fn : callable
        A metricloss loss: ``loss_fn(*arrays, **hyperparameters) -> (value, grad)``.
    **hyperparameters
        Keyword arguments of ``loss_fn`` bound once (``margin=0.5``, ``mining="hard"``); refused at the call.

    Returns
    -------
    loss : callable
        ``loss(*tensors, **tensor_keywords)``: the loss as a 0-d tensor, of the first floating-point argument's
        dtype.
    """
    check_hyperparameters(loss_fn, hyperparameters)

    def loss(*tensors, **tensor_keywords):
        refuse_hyperparameters_at_call(loss_fn, tensor_keywords)
        n_positional, (names, keyword_tensors) = len(tensors), flatten_keywords(tensor_keywords)
        inputs = [tf.convert_to_tensor(t) for t in (*tensors, *keyword_tensors)]
        floats = [t for t in inputs if t.dtype.is_floating]
        if not floats:
            raise TypeError(f"{loss_fn.__name__} needs at least one floating-point tensor to differentiate")
        value_dtype = floats[0].dtype
        if tf.executing_eagerly():
            return _eager(loss_fn, hyperparameters, inputs, n_positional, names, value_dtype)
        if all(t.shape.is_fully_defined() for t in inputs):
            specs = [(t.shape.as_list(), t.dtype.as_numpy_dtype) for t in inputs]
            has_grad = check_on_stand_ins(loss_fn, hyperparameters, specs, n_positional, names)
        else:  # shapes known only when it runs: every float argument gets a gradient, zero where the loss has none
            has_grad = [t.dtype.is_floating for t in inputs]
        output_dtypes = [value_dtype] + [t.dtype for t, h in zip(inputs, has_grad, strict=True) if h]

        def host(*arrays):
            value, grads = call_loss(loss_fn, hyperparameters, list(arrays), n_positional, names)
            return [value_dtype.as_numpy_dtype(value)] + [
                (np.zeros_like(a) if g is None else g).astype(a.dtype, copy=False)
                for g, a, h in zip(grads, arrays, has_grad, strict=True)
                if h
            ]

        @tf.custom_gradient
        def differentiable(*args):
            value, *grads = tf.numpy_function(host, list(args), output_dtypes, stateful=False)
            value = tf.ensure_shape(value, [])
            saved = iter(grads)
            grads = [tf.ensure_shape(next(saved), t.shape) if h else None for t, h in zip(args, has_grad, strict=True)]

            def gradient(upstream):
                return [None if g is None else upstream * g for g in grads]

            return value, gradient

        return differentiable(*inputs)

    loss.__name__ = loss.__qualname__ = f"tf_{loss_fn.__name__}"
    loss.__doc__ = f"{loss_fn.__name__} as a differentiable TensorFlow function (metricloss.adapters.tensorflow.wrap)."
    return loss


def _eager(loss_fn, hyperparameters, inputs, n_positional, names, value_dtype):
    """The loss once, on the tensors' values (its checks raise here), recorded with its analytic gradients."""
    value, grads = call_loss(loss_fn, hyperparameters, [t.numpy() for t in inputs], n_positional, names)

    @tf.custom_gradient
    def differentiable(*args):
        def gradient(upstream):
            return [
                None if g is None else upstream * tf.constant(g, dtype=t.dtype)
                for g, t in zip(grads, args, strict=True)
            ]

        return tf.constant(value, dtype=value_dtype), gradient

    return differentiable(*inputs)
