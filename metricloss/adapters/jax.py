"""JAX adapter: any metricloss loss as a differentiable JAX function, under ``jit`` and ``vmap`` too.

>>> import jax, jax.numpy as jnp
>>> import metricloss
>>> from metricloss.adapters.jax import wrap
>>> loss = wrap(metricloss.contrastive_loss, margin=1.0)
>>> x = jnp.arange(12.0).reshape(6, 2) / 10
>>> grad = jax.grad(loss)(x, jnp.array([0, 0, 1, 1, 2, 2]))
>>> grad.shape
(6, 2)

How it works: a ``jax.custom_vjp`` whose forward pass calls metricloss on the host with NumPy arrays and returns the
value and the analytic gradients, and whose backward pass multiplies the saved gradients by the cotangent. Eagerly
the arrays are concrete and the loss runs once, directly; under ``jit`` and ``vmap`` it runs in a
``jax.pure_callback`` (exactly the declared dtypes), after a call on stand-ins that checks the arguments and says
which of them the loss differentiates. ``vmap`` runs the callback once per batch element
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

from ._common import (
    call_loss,
    check_hyperparameters,
    check_on_stand_ins,
    flatten_keywords,
    refuse_hyperparameters_at_call,
)


def wrap(loss_fn, **hyperparameters):
    """Turn a metricloss loss into a differentiable JAX function of arrays.

    ``wrap(loss_fn, **hyperparameters)(*arrays, **array_keywords)`` returns the loss as a 0-d array; gradients
    flow to the arguments the loss differentiates (integer labels, boolean relevance and float targets such as
    ``y`` in {−1, 1} get a zero cotangent). A keyword may be a tuple or list of arrays, such as index arrays mined
    for the batch (``triplets=(a, p, n)``). Hyper-parameters are bound once, here, and checked against the loss's
    signature at once. Eagerly the loss runs once, on the arrays themselves, and raises in the caller's frame;
    under ``jit`` or ``vmap`` argument errors (shapes, dtypes, options) are raised while tracing, from the loss's
    own checks run on stand-ins of the arrays' shapes and dtypes.

    Parameters
    ----------
    loss_fn : callable
        A metricloss loss: ``loss_fn(*arrays, **hyperparameters) -> (value, grad)``.
    **hyperparameters
        Keyword arguments of ``loss_fn`` bound once (``margin=0.5``, ``mining="hard"``); refused at the call.

    Returns
    -------
    loss : callable
        ``loss(*arrays, **array_keywords)``: the loss as a 0-d JAX array, of the first floating-point argument's
        dtype.
    """
    check_hyperparameters(loss_fn, hyperparameters)

    def loss(*arrays, **array_keywords):
        refuse_hyperparameters_at_call(loss_fn, array_keywords)
        n_positional, (names, keyword_arrays) = len(arrays), flatten_keywords(array_keywords)
        inputs = [jnp.asarray(a) for a in (*arrays, *keyword_arrays)]
        floats = [a for a in inputs if jnp.issubdtype(a.dtype, jnp.floating)]
        if not floats:
            raise TypeError(f"{loss_fn.__name__} needs at least one floating-point array to differentiate")
        value_dtype = floats[0].dtype

        def on_host(args):
            # Concrete arrays (eager, with or without grad): one call, whose own checks raise here.
            value, grads = call_loss(loss_fn, hyperparameters, [np.asarray(a) for a in args], n_positional, names)
            return jnp.asarray(value, value_dtype), tuple(
                None if g is None else jnp.asarray(g, a.dtype) for g, a in zip(grads, args, strict=True)
            )

        def via_callback(args):
            # Tracers (jit, vmap): the loss's checks on stand-ins, once per trace, also say which arguments get a
            # gradient; the callback then returns exactly those (the declared dtypes).
            specs = [(a.shape, a.dtype) for a in args]
            has_grad = check_on_stand_ins(loss_fn, hyperparameters, specs, n_positional, names)
            declared = (
                jax.ShapeDtypeStruct((), value_dtype),
                tuple(jax.ShapeDtypeStruct(*s) for s, h in zip(specs, has_grad, strict=True) if h),
            )

            def host(*host_arrays):
                value, grads = call_loss(
                    loss_fn, hyperparameters, [np.asarray(a) for a in host_arrays], n_positional, names
                )
                return np.asarray(value, dtype=value_dtype), tuple(
                    np.asarray(g, dtype=d.dtype)
                    for g, d in zip([g for g in grads if g is not None], declared[1], strict=True)
                )

            value, grads = jax.pure_callback(host, declared, *args, vmap_method="sequential")
            saved = iter(grads)
            return value, tuple(next(saved) if h else None for h in has_grad)

        def value_and_grads(*args):
            return via_callback(args) if any(isinstance(a, jax.core.Tracer) for a in args) else on_host(args)

        @jax.custom_vjp
        def differentiable(*args):
            return value_and_grads(*args)[0]

        def forward(*args):
            return value_and_grads(*args)

        def backward(grads, cotangent):
            return tuple(None if g is None else cotangent * g for g in grads)

        differentiable.defvjp(forward, backward)
        return differentiable(*inputs)

    loss.__name__ = loss.__qualname__ = f"jax_{loss_fn.__name__}"
    loss.__doc__ = f"{loss_fn.__name__} as a differentiable JAX function (metricloss.adapters.jax.wrap)."
    return loss
