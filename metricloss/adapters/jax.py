"""JAX adapter: any metricloss loss as a differentiable JAX function, under ``jit`` and ``vmap`` too.

>>> import jax, jax.numpy as jnp
>>> import metricloss
>>> from metricloss.adapters.jax import wrap
>>> loss = wrap(metricloss.contrastive_loss, margin=1.0)
>>> x = jnp.arange(12.0).reshape(6, 2) / 10
>>> grad = jax.grad(loss)(x, jnp.array([0, 0, 1, 1, 2, 2]))
>>> grad.shape
(6, 2)

How it works: ``jax.custom_vjp`` around ``jax.pure_callback``: the forward pass calls metricloss on the host with
NumPy arrays and returns the value and the analytic gradients (exactly the declared dtypes); the backward pass
multiplies the saved gradients by the cotangent. ``vmap`` runs the callback once per batch element
(``vmap_method="sequential"``). Works eagerly, under ``jit`` and ``vmap``, in float32 and with
``jax_enable_x64``. Not supported: forward-mode (``jvp``, ``jacfwd``) and higher derivatives, which ``custom_vjp``
does not define; accelerators other than the host (the callback copies to and from it).
"""

try:
    import jax
    import jax.numpy as jnp
except ImportError:  # pragma: no cover - exercised only without jax
    raise ImportError("metricloss.adapters.jax needs JAX: pip install 'metricloss[jax]'") from None

import numpy as np

from ._common import call_loss, check_hyperparameters, stand_in


def wrap(loss_fn, **hyperparameters):
    """Turn a metricloss loss into a differentiable JAX function of arrays.

    ``wrap(loss_fn, **hyperparameters)(*arrays, **array_keywords)`` returns the loss as a 0-d array; gradients
    flow to every floating-point argument (integer labels get none). Hyper-parameters are bound once, here, and
    checked against the loss's signature at once; argument errors (shapes, dtypes) are raised before the callback,
    from the loss's own checks run on the arrays' shapes and dtypes.
    """
    check_hyperparameters(loss_fn, hyperparameters)

    def loss(*arrays, **array_keywords):
        n_positional, names = len(arrays), tuple(array_keywords)
        inputs = [jnp.asarray(a) for a in (*arrays, *array_keywords.values())]
        is_float = [jnp.issubdtype(a.dtype, jnp.floating) for a in inputs]
        floats = [a for a, f in zip(inputs, is_float, strict=True) if f]
        if not floats:
            raise TypeError(f"{loss_fn.__name__} needs at least one floating-point array to differentiate")
        # The loss's own checks on stand-ins of the right shapes and dtypes: wrong shapes, dtypes or options raise
        # here, in the caller's frame, not wrapped inside the callback (values, e.g. NaN, are checked there). It
        # costs one extra evaluation per trace: once under jit, once per call eagerly.
        call_loss(loss_fn, hyperparameters, [stand_in(a.shape, a.dtype) for a in inputs], n_positional, names)
        declared = (
            jax.ShapeDtypeStruct((), floats[0].dtype),
            tuple(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in floats),
        )

        def host(*host_arrays):
            arrays = [np.asarray(a) for a in host_arrays]
            value, grads = call_loss(loss_fn, hyperparameters, arrays, n_positional, names)
            return np.asarray(value, dtype=declared[0].dtype), tuple(
                np.asarray(g, dtype=d.dtype) for g, d in zip(grads, declared[1], strict=True)
            )

        def value_and_grads(*args):
            return jax.pure_callback(host, declared, *args, vmap_method="sequential")

        @jax.custom_vjp
        def differentiable(*args):
            return value_and_grads(*args)[0]

        def forward(*args):
            return value_and_grads(*args)

        def backward(grads, cotangent):
            saved = iter(grads)
            return tuple(cotangent * next(saved) if f else None for f in is_float)

        differentiable.defvjp(forward, backward)
        return differentiable(*inputs)

    loss.__name__ = loss.__qualname__ = f"jax_{loss_fn.__name__}"
    loss.__doc__ = f"{loss_fn.__name__} as a differentiable JAX function (metricloss.adapters.jax.wrap)."
    return loss
