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

How it works: ``tf.custom_gradient`` around ``tf.numpy_function``: the forward pass calls metricloss on NumPy arrays
and returns the value and the analytic gradients (shapes restored with ``tf.ensure_shape``), the gradient function
multiplies them by the upstream gradient. Works eagerly and inside ``tf.function``, float32 and float64.
What it costs: ``tf.numpy_function`` holds the GIL and runs on the host; a ``tf.function`` that uses it cannot be
serialised into a SavedModel (the Python callback is not part of the graph) nor compiled with XLA
(``jit_compile=True``); and second derivatives are not defined.
"""

try:
    import tensorflow as tf
except ImportError:  # pragma: no cover - exercised only without TensorFlow
    raise ImportError("metricloss.adapters.tensorflow needs TensorFlow: pip install 'metricloss[tf]'") from None

from ._common import call_loss, check_hyperparameters, stand_in


def wrap(loss_fn, **hyperparameters):
    """Turn a metricloss loss into a differentiable TensorFlow function of tensors.

    ``wrap(loss_fn, **hyperparameters)(*tensors, **tensor_keywords)`` returns the loss as a 0-d tensor; gradients
    flow to every floating-point argument (integer labels get none). Hyper-parameters are checked against the
    loss's signature here; wrong shapes, dtypes or options raise in the caller's frame, from the loss's own checks
    run on stand-ins of the arguments' shapes (where the shapes are known).
    """
    check_hyperparameters(loss_fn, hyperparameters)

    def loss(*tensors, **tensor_keywords):
        n_positional, names = len(tensors), tuple(tensor_keywords)
        inputs = [tf.convert_to_tensor(t) for t in (*tensors, *tensor_keywords.values())]
        is_float = [t.dtype.is_floating for t in inputs]
        floats = [t for t, f in zip(inputs, is_float, strict=True) if f]
        if not floats:
            raise TypeError(f"{loss_fn.__name__} needs at least one floating-point tensor to differentiate")
        if all(t.shape.is_fully_defined() for t in inputs):
            stand_ins = [stand_in(t.shape.as_list(), t.dtype.as_numpy_dtype) for t in inputs]
            call_loss(loss_fn, hyperparameters, stand_ins, n_positional, names)
        output_dtypes = [floats[0].dtype] + [t.dtype for t in floats]

        def host(*arrays):
            value, grads = call_loss(loss_fn, hyperparameters, list(arrays), n_positional, names)
            return [output_dtypes[0].as_numpy_dtype(value)] + [
                g.astype(d.as_numpy_dtype, copy=False) for g, d in zip(grads, output_dtypes[1:], strict=True)
            ]

        @tf.custom_gradient
        def differentiable(*args):
            value, *grads = tf.numpy_function(host, list(args), output_dtypes, stateful=False)
            value = tf.ensure_shape(value, [])
            grads = [tf.ensure_shape(g, t.shape) for g, t in zip(grads, floats, strict=True)]

            def gradient(upstream):
                saved = iter(grads)
                return [upstream * next(saved) if f else None for f in is_float]

            return value, gradient

        return differentiable(*inputs)

    loss.__name__ = loss.__qualname__ = f"tf_{loss_fn.__name__}"
    loss.__doc__ = f"{loss_fn.__name__} as a differentiable TensorFlow function (metricloss.adapters.tensorflow.wrap)."
    return loss
