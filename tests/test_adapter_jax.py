"""The JAX adapter: every registered loss called with native arrays (float targets, integer labels, bool relevance)
through jax.test_util.check_grads (reverse mode, float64) and against metricloss, eagerly and under jit, jit and vmap
equal to eager, float32 in and out, and errors raised before the callback."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from registry import BINARY, DIFFERENTIABLE, LABELS, REGISTRY, REGISTRY_IDS, RELEVANCE, SIGNS
from support import MINED_PER_BATCH_IDS, mined_per_batch

import metricloss as ml
from metricloss.adapters.jax import wrap

cases = pytest.mark.parametrize("case", REGISTRY, ids=REGISTRY_IDS)


@pytest.fixture
def x64():
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


def native(case, arrays, targets_as="float"):
    """The case's arrays as a JAX user gives them: floats for features and scores, integer labels (int64 with x64,
    else int32), bool relevance, and targets (y in {−1, 1} or {0, 1}) as float arrays of the features' dtype, or as
    integers with ``targets_as="int"``."""
    floating = next(a.dtype for a, kind in zip(arrays, case.arg_kinds, strict=True) if kind in DIFFERENTIABLE)
    out = []
    for a, kind in zip(arrays, case.arg_kinds, strict=True):
        if kind in DIFFERENTIABLE or (kind in (SIGNS, BINARY) and targets_as == "float"):
            out.append(jnp.asarray(a, dtype=floating))
        elif kind == RELEVANCE:
            out.append(jnp.asarray(a, dtype=bool))
        else:
            assert kind in (LABELS, SIGNS, BINARY)
            out.append(jnp.asarray(a, dtype=jnp.int64 if jax.config.jax_enable_x64 else jnp.int32))
    return out


def split(case, arrays):
    """The wrapped loss as a function of the case's differentiable arrays (the others native and held fixed), and
    those arrays."""
    held = native(case, arrays)
    return case.of_differentiable(wrap(case.loss, **case.hyper), held, jnp.asarray)


@cases
def test_check_grads_in_reverse_mode_with_x64(case, x64):
    if case.frozen_value is not None:
        pytest.skip(
            "its gradient holds weights constant (circle's detached α), so it is not the value's: the contract "
            "differences the frozen-weight objective instead"
        )
    of_floats, floats = split(case, case.make_inputs(np.random.default_rng(0), np.float64))
    assert floats[0].dtype == jnp.float64
    check_grads(of_floats, floats, order=1, modes=("rev",))


@cases
@pytest.mark.parametrize("targets_as", ["float", "int"])
@pytest.mark.parametrize("under_jit", [False, True], ids=["eager", "jit"])
def test_native_arguments_give_metricloss_values_and_gradients_in_float32(case, targets_as, under_jit):
    """Eagerly and under jit, with targets as float (or int) arrays: the value and the gradients are metricloss's
    own; a float target, differentiated too, gets a zero cotangent (custom_vjp's None)."""
    arrays = case.make_inputs(np.random.default_rng(1), np.float32)
    inputs = native(case, arrays, targets_as)
    argnums = tuple(i for i, a in enumerate(inputs) if jnp.issubdtype(a.dtype, jnp.floating))
    value_and_grad = jax.value_and_grad(wrap(case.loss, **case.hyper), argnums=argnums)
    value, grads = (jax.jit(value_and_grad) if under_jit else value_and_grad)(*inputs)
    expected_value, expected_grads = case(*arrays)
    expected_grads = iter(expected_grads if isinstance(expected_grads, tuple) else (expected_grads,))
    assert value.dtype == jnp.float32 and float(value) == pytest.approx(expected_value, rel=1e-6)
    for i, got in zip(argnums, grads, strict=True):
        assert got.dtype == jnp.float32
        if case.arg_kinds[i] in DIFFERENTIABLE:
            np.testing.assert_array_equal(np.asarray(got), next(expected_grads))
        else:
            np.testing.assert_array_equal(np.asarray(got), np.zeros(arrays[i].shape))
    assert next(expected_grads, None) is None


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
    with pytest.raises(
        TypeError, match=r"contrastive_loss\(\) got an unexpected keyword argument 'marign'; did you mean margin=\?"
    ):
        wrap(ml.contrastive_loss, marign=1.0)
    loss = wrap(ml.contrastive_loss)
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\) to match embeddings; got \(3,\)"):
        loss(jnp.zeros((4, 2)), jnp.array([0, 0, 1]))
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\)"):
        jax.jit(loss)(jnp.zeros((4, 2)), jnp.array([0, 0, 1]))
    with pytest.raises(ValueError, match="form must be one of"):
        wrap(ml.contrastive_loss, form="cubic")(jnp.zeros((4, 2)), jnp.array([0, 0, 1, 1]))
    # a hyper-parameter given to the wrapped function instead of to wrap: named, with the fix
    with pytest.raises(
        TypeError, match=r"symmetric=True is a hyper-parameter.*wrap\(multiple_negatives_ranking_loss, symmetric=True\)"
    ):
        wrap(ml.multiple_negatives_ranking_loss)(jnp.zeros((4, 2)), jnp.ones((4, 2)), symmetric=True)


def test_a_float_target_is_checked_by_its_values_not_refused_as_a_stand_in():
    """Eagerly the loss sees the target itself; under jit a target of ones (valid in {−1, 1} and {0, 1}) stands in."""
    x1, x2, y = jnp.array([0.3, -0.2, 1.0]), jnp.array([0.1, 0.4, -0.5]), jnp.array([1.0, -1.0, 1.0])
    loss = wrap(ml.margin_ranking_loss, margin=0.1)
    expected = ml.margin_ranking_loss(np.asarray(x1), np.asarray(x2), np.asarray(y), margin=0.1)[0]
    assert float(loss(x1, x2, y)) == pytest.approx(expected, rel=1e-6)
    assert float(jax.jit(loss)(x1, x2, y)) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match=r"y must contain only the values \(-1, 1\); got .*0\.5"):
        loss(x1, x2, jnp.array([1.0, 0.5, 1.0]))
    with pytest.raises(ValueError, match=r"x2 must have the same shape as x1, \(3,\); got \(2,\)"):
        jax.jit(loss)(x1, x2[:2], y)
    batched = jax.vmap(loss, in_axes=(0, 0, None))(jnp.stack([x1, x2]), jnp.stack([x2, x1]), y)
    assert float(batched[0]) == pytest.approx(expected, rel=1e-6)


def test_eagerly_the_loss_runs_once_on_the_data_and_under_jit_stand_ins_have_distinct_rows():
    """What the adapter costs, counted rather than timed: eagerly one call of the loss, on the arrays themselves;
    under jit one call on stand-ins per trace, whose rows are distinct (all-equal rows put every pair in the
    distances' cancellation zone, the slow direct-difference path), then the callback on the data."""
    seen = []

    def counted_triplet_loss(embeddings, labels, **hyper):
        seen.append(np.array(embeddings))
        return ml.triplet_loss(embeddings, labels, **hyper)

    rng = np.random.default_rng(5)
    x, labels = jnp.asarray(rng.standard_normal((64, 8)), dtype=jnp.float32), jnp.asarray(np.arange(64) % 8)
    value_and_grad = jax.value_and_grad(wrap(counted_triplet_loss, mining="hard"))
    value_and_grad(x, labels)
    assert len(seen) == 1 and np.array_equal(seen[0], np.asarray(x))
    seen.clear()
    jax.block_until_ready(jax.jit(value_and_grad)(x, labels))
    assert len(seen) == 2 and np.array_equal(seen[1], np.asarray(x))
    stand_in = seen[0]
    assert len(np.unique(stand_in, axis=0)) == len(stand_in)
    squared = ((stand_in[:, None] - stand_in[None]) ** 2).sum(-1)
    norms = (stand_in**2).sum(-1)
    off_diagonal = ~np.eye(len(stand_in), dtype=bool)
    assert (squared > 0.1 * (norms[:, None] + norms[None]))[off_diagonal].all()  # float32's cancellation ratio


@pytest.mark.parametrize("jitted", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("at", range(2), ids=MINED_PER_BATCH_IDS)
def test_index_arrays_mined_for_each_batch_pass_as_a_tuple_keyword(at, jitted):
    """triplets=(a, p, n) as a tuple of arrays at each call, eagerly and under jit (where the loss's checks run on
    stand-ins, the index arrays empty): the value and gradient are metricloss's own."""
    loss_fn, hyper, x, labels, triplets = mined_per_batch(np.float32)[at]
    loss = wrap(loss_fn, **hyper)

    def value_and_grad(embeddings, labels, triplets):
        return jax.value_and_grad(lambda e: loss(e, labels, triplets=triplets))(embeddings)

    run = jax.jit(value_and_grad) if jitted else value_and_grad
    value, grad = run(jnp.asarray(x), jnp.asarray(labels), tuple(jnp.asarray(t) for t in triplets))
    expected_value, expected_grad = loss_fn(x, labels, triplets=triplets, **hyper)
    assert float(value) == pytest.approx(expected_value, rel=1e-6)
    np.testing.assert_array_equal(np.asarray(grad), expected_grad)


@pytest.mark.usefixtures("x64")
def test_a_learnable_beta_with_references_gets_each_gradient():
    """margin_loss with a learnable β and references returns its gradients in signature order (embeddings, β,
    references), the order the adapter hands them out in; before issue 22 it returned β last and the call raised
    "margin_loss returned gradients of shapes [(4, 8), (3, 8), (1,)]"."""
    rng = np.random.default_rng(5)
    x, refs, beta = rng.standard_normal((4, 8)), rng.standard_normal((3, 8)), np.array([1.0])
    labels, ref_labels = np.array([0, 0, 1, 1]), np.array([0, 1, 1])
    expected_value, expected_grads = ml.margin_loss(
        x, labels, beta=beta, margin=0.1, nu=0.1, ref_embeddings=refs, ref_labels=ref_labels
    )
    loss = wrap(ml.margin_loss, margin=0.1, nu=0.1)

    def of_floats(x, beta, refs):
        return loss(x, jnp.asarray(labels), beta=beta, ref_embeddings=refs, ref_labels=jnp.asarray(ref_labels))

    floats = (jnp.asarray(x), jnp.asarray(beta), jnp.asarray(refs))
    value, grads = jax.value_and_grad(of_floats, argnums=(0, 1, 2))(*floats)
    assert float(value) == expected_value
    for got, expected in zip(grads, expected_grads, strict=True):
        np.testing.assert_array_equal(np.asarray(got), expected)
