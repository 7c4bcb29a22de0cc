"""The JAX adapter: every registered loss through jax.test_util.check_grads (reverse mode, float64), jit and vmap
equal to eager, float32 in and out, and errors raised before the callback."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from registry import REGISTRY, REGISTRY_IDS

import metricloss as ml
from metricloss.adapters.jax import wrap

cases = pytest.mark.parametrize("case", REGISTRY, ids=REGISTRY_IDS)


@pytest.fixture
def x64():
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


def split(case, arrays):
    """The wrapped loss as a function of the case's floating-point arrays, and those arrays."""
    return case.of_differentiable(wrap(case.loss, **case.hyper), arrays, jnp.asarray)


@cases
def test_check_grads_in_reverse_mode_with_x64(case, x64):
    of_floats, floats = split(case, case.make_inputs(np.random.default_rng(0), np.float64))
    assert floats[0].dtype == jnp.float64
    check_grads(of_floats, floats, order=1, modes=("rev",))


@cases
def test_float32_values_and_gradients_equal_metricloss(case):
    arrays = case.make_inputs(np.random.default_rng(1), np.float32)
    of_floats, floats = split(case, arrays)
    value, grads = jax.value_and_grad(of_floats, argnums=tuple(range(len(floats))))(*floats)
    expected_value, expected_grads = case(*arrays)
    expected_grads = expected_grads if isinstance(expected_grads, tuple) else (expected_grads,)
    assert value.dtype == jnp.float32 and float(value) == pytest.approx(expected_value, rel=1e-6)
    for got, expected in zip(grads, expected_grads, strict=True):
        assert got.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(got), expected)


@pytest.mark.parametrize("mining", ml.MININGS)
def test_jit_and_vmap_equal_eager(mining):
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal((3, 12, 4)), dtype=jnp.float32)
    labels = jnp.asarray(np.repeat(np.arange(3), 4))
    loss = wrap(ml.triplet_loss, mining=mining, margin=0.5)
    eager = [loss(x[i], labels) for i in range(3)]
    eager_grads = [jax.grad(loss)(x[i], labels) for i in range(3)]
    jitted = jax.jit(loss)
    np.testing.assert_array_equal(np.asarray([jitted(x[i], labels) for i in range(3)]), np.asarray(eager))
    batched = jax.vmap(loss, in_axes=(0, None))(x, labels)
    np.testing.assert_array_equal(np.asarray(batched), np.asarray(eager))
    batched_grads = jax.jit(jax.vmap(jax.grad(loss), in_axes=(0, None)))(x, labels)
    np.testing.assert_array_equal(np.asarray(batched_grads), np.asarray(eager_grads))


def test_errors_are_raised_in_the_callers_frame_not_in_the_callback():
    with pytest.raises(TypeError, match="contrastive_loss: got an unexpected keyword argument 'marign'"):
        wrap(ml.contrastive_loss, marign=1.0)
    loss = wrap(ml.contrastive_loss)
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\) to match embeddings; got \(3,\)"):
        loss(jnp.zeros((4, 2)), jnp.array([0, 0, 1]))
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\)"):
        jax.jit(loss)(jnp.zeros((4, 2)), jnp.array([0, 0, 1]))
    with pytest.raises(ValueError, match="form must be one of"):
        wrap(ml.contrastive_loss, form="cubic")(jnp.zeros((4, 2)), jnp.array([0, 0, 1, 1]))
