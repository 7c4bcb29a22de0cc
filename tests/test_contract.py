"""The contract every registered loss must pass (tests/registry/ lists them), rung by rung:
literals → textbook version → finite differences → invariances → dtypes → nothing active / edge cases → bad input →
hypothesis properties → backend parity → array kinds (torch CPU tensors, array-api-strict arrays)."""

import itertools
import re

import array_api_strict
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from registry import (
    BINARY,
    CENTERS,
    CLASS_PARAMS,
    DIFFERENTIABLE,
    EMBEDDINGS,
    FEATURE_ROWS,
    INDEXED_BY_LABELS,
    LABELS,
    REGISTRY,
    REGISTRY_IDS,
    RELEVANCE,
    SCORE_MATRIX,
    SCORES,
    SIGNS,
)

from metricloss import _batch
from metricloss._kernels.numba import _jit
from metricloss.testing import TOLERANCES, assert_close, check_grad

DTYPES = [np.float32, np.float64]
cases = pytest.mark.parametrize("case", REGISTRY, ids=REGISTRY_IDS)


def _grads(case, grad):
    """The gradient as a tuple, one entry per differentiable input."""
    return grad if case.n_diff > 1 else (grad,)


def _diff_args(case, arrays):
    return arrays[: case.n_diff]


def _bound(case, arrays):
    """A function of the differentiable arrays alone, for check_grad."""
    constants = arrays[case.n_diff :]
    return lambda *diff: case(*diff, *constants)


# --- hand-computed literals -------------------------------------------------------------------------------------


def _family(case):
    """The loss a case configures: its id up to the configuration, a query-vs-reference variant counted with it."""
    return case.id.split("[")[0].removesuffix("_references")


@cases
def test_hand_computed_literals(case):
    """Each literal's value (and gradient, where computed by hand) comes from the arithmetic in the registry."""
    if not case.literals:
        pytest.skip("no literal for this configuration (test_every_family_has_a_hand_computed_literal)")
    for arrays, expected_value, expected_grads in case.literals:
        value, grad = case(*arrays)
        assert value == pytest.approx(expected_value, rel=1e-12, abs=1e-15)
        if expected_grads is not None:
            for got, expected in zip(_grads(case, grad), expected_grads, strict=True):
                assert_close(got, expected, rtol=1e-11)


def test_every_family_has_a_hand_computed_literal():
    """No family of losses goes without a value worked out by hand."""
    assert {_family(case) for case in REGISTRY if case.literals} == {_family(case) for case in REGISTRY}


# --- the textbook version ---------------------------------------------------------------------------------------


@cases
@pytest.mark.parametrize("seed", range(3))
def test_value_and_gradient_equal_the_textbook_version(case, seed):
    """The fast loss's value and gradient equal its textbook twin's (metricloss.textbook: the paper's formula as
    loops, the gradient term by term), in float64, to a relative 1e-9 (the gradient relative to its largest entry)."""
    arrays = case.make_inputs(np.random.default_rng(seed), np.float64)
    value, grad = case(*arrays)
    expected_value, expected_grad = case.textbook_result(*arrays)
    assert value == pytest.approx(expected_value, rel=TOLERANCES[np.dtype(np.float64)], abs=1e-12)
    for got, expected in zip(_grads(case, grad), _grads(case, expected_grad), strict=True):
        assert_close(got, expected, rtol=TOLERANCES[np.dtype(np.float64)])


# --- finite differences -----------------------------------------------------------------------------------------


@cases
@pytest.mark.parametrize("seed", range(3))
def test_gradient_matches_central_differences(case, seed):
    """Every partial derivative equals central differences of the value, float64, relative error <= 1e-6 (for a loss
    that holds weights constant in its gradient, of the objective with the weights frozen at the point)."""
    arrays = case.make_inputs(np.random.default_rng(100 + seed), np.float64)
    bound = _bound(case, arrays)
    if case.frozen_value is None:
        loss = bound
    else:  # the gradient of the objective with the weights frozen at this point

        def loss(*diff):
            return case.frozen_value(arrays, *diff, *arrays[case.n_diff :]), bound(*diff)[1]

    check_grad(loss, *_diff_args(case, arrays), rtol=1e-6)


# The largest step relative to max(1, max|x|) at which the registry promises no kink: 100 times check_grad's default.
_KINK_STEP = 1e-4


@cases
@pytest.mark.parametrize("seed", range(3))
def test_inputs_are_away_from_kinks(case, seed):
    """The finite-difference rung's inputs keep the registry's promise, "away from kinks": along a random direction
    in each row of each differentiable input, the slopes of the value to the left and to the right of the point, at
    the step h = 1e-4·max(1, max|x|), agree. A smooth value's slopes differ by about h·f'' (≤ 2e-3 relative in
    every registered case); a kink (a hinge, a pair entering a mined set, a changing count of non-zero terms)
    within h makes them differ by the jump in the slope, of the order of the slope itself."""
    arrays = case.make_inputs(np.random.default_rng(100 + seed), np.float64)
    diff, constants = _diff_args(case, arrays), arrays[case.n_diff :]

    def value(*d):
        return case(*d, *constants)[0]

    h = _KINK_STEP * max(1.0, max(float(np.abs(a).max()) for a in diff))
    at_point = value(*diff)
    rng = np.random.default_rng(seed)
    for k, a in enumerate(diff):
        for row in range(a.shape[0]):
            step = np.zeros_like(a)
            step[row] = rng.standard_normal(a[row].shape)
            step *= h / np.linalg.norm(step)
            moved = list(diff)
            moved[k] = a + step
            right = value(*moved)
            moved[k] = a - step
            left = value(*moved)
            jump = abs((right - at_point) - (at_point - left)) / h
            scale = max(1.0, abs(right - left) / (2 * h), abs(at_point))
            assert jump <= 0.05 * scale, f"{case.arg_names[k]} row {row}: slopes differ by {jump:.3g} across h={h:.3g}"


# --- invariances ------------------------------------------------------------------------------------------------


def _rows_of_groups(case, arrays):
    """The number of rows of each row group."""
    groups = case.row_groups or (0,) * len(arrays)
    return {group: a.shape[0] for group, a in zip(groups, arrays, strict=True)}


def _reindexed(case, arrays, orders):
    """Each array's rows (and, for a matrix whose columns follow a row group, its columns) taken in ``orders``."""
    groups = case.row_groups or (0,) * len(arrays)
    columns = case.column_groups or (None,) * len(arrays)
    out = []
    for a, group, column_group in zip(arrays, groups, columns, strict=True):
        a = a[orders[group]]
        out.append(a if column_group is None else a[:, orders[column_group]])
    return out


@cases
def test_permuting_the_batch_permutes_the_gradient(case):
    if case.permutable_groups == ():
        pytest.skip("the loss depends on the order of the rows (random draws in row order, or pairs taken by position)")
    rng = np.random.default_rng(1)
    arrays = case.make_inputs(rng, np.float64)
    groups = case.row_groups or (0,) * len(arrays)
    orders = {
        group: rng.permutation(n) if case.permutable_groups is None or group in case.permutable_groups else np.arange(n)
        for group, n in _rows_of_groups(case, arrays).items()
    }
    value, grad = case(*arrays)
    permuted = _reindexed(case, arrays, orders)
    indexed = [kind for kind in case.arg_kinds if kind in INDEXED_BY_LABELS]
    if indexed:  # labels index the centres' (or β's) rows: moving a row renames its class
        new_row = np.argsort(orders[groups[case.arg_kinds.index(indexed[0])]])
        permuted = [new_row[a] if kind == LABELS else a for a, kind in zip(permuted, case.arg_kinds, strict=True)]
    permuted_value, permuted_grad = case(*permuted)
    assert permuted_value == pytest.approx(value, rel=1e-12)
    for got, expected, group in zip(_grads(case, permuted_grad), _grads(case, grad), groups, strict=False):
        assert_close(got, expected[orders[group]])


@cases
def test_relabelling_classes_changes_nothing(case):
    if LABELS not in case.arg_kinds:
        pytest.skip("the loss takes no class labels")
    if any(kind in INDEXED_BY_LABELS for kind in case.arg_kinds):
        pytest.skip("labels index the centres' rows: renaming classes moves those rows, as the permutation rung does")
    rng = np.random.default_rng(2)
    arrays = case.make_inputs(rng, np.float64)
    new_names = 100 + 7 * rng.permutation(10)  # one renaming of the classes, for every label argument
    relabelled = [new_names[a] if kind == LABELS else a for a, kind in zip(arrays, case.arg_kinds, strict=True)]
    value, grad = case(*arrays)
    new_value, new_grad = case(*relabelled)
    assert new_value == value
    for got, expected in zip(_grads(case, new_grad), _grads(case, grad), strict=True):
        np.testing.assert_array_equal(got, expected)


def _in_feature_rows(case, arrays, move):
    """``arrays`` with ``move`` applied to those whose rows lie in the embeddings' feature space (embeddings,
    centres); the others (labels, a per-class β) as they are."""
    return [move(a) if kind in FEATURE_ROWS else a for a, kind in zip(arrays, case.arg_kinds, strict=True)]


@cases
def test_translation_leaves_value_unchanged_and_gradients_sum_to_zero(case):
    if not case.translation_invariant:
        pytest.skip("the loss depends on the origin (cosine, or scores rather than embeddings)")
    rng = np.random.default_rng(3)
    arrays = case.make_inputs(rng, np.float64)
    shift = 3.0 * rng.standard_normal(arrays[0].shape[1])
    value, grad = case(*arrays)
    shifted_value, shifted_grad = case(*_in_feature_rows(case, arrays, lambda a: a + shift))
    assert shifted_value == pytest.approx(value, rel=1e-9)
    for got, expected in zip(_grads(case, shifted_grad), _grads(case, grad), strict=True):
        assert_close(got, expected, rtol=1e-8)
    rows = [g for g, kind in zip(_grads(case, grad), case.arg_kinds, strict=False) if kind in FEATURE_ROWS]
    total = sum(g.sum(axis=0) for g in rows)
    assert np.abs(total).max() <= 1e-12 * max(np.abs(g).max() for g in _grads(case, grad))


@cases
def test_rotation_rotates_the_gradient(case):
    if not case.rotation_invariant:
        pytest.skip("the loss is not rotation invariant (scores, p != 2, or torch's eps in the difference)")
    rng = np.random.default_rng(4)
    arrays = case.make_inputs(rng, np.float64)
    rotation, _ = np.linalg.qr(rng.standard_normal((arrays[0].shape[1],) * 2))
    value, grad = case(*arrays)
    rotated_value, rotated_grad = case(*_in_feature_rows(case, arrays, lambda a: a @ rotation))
    assert rotated_value == pytest.approx(value, rel=1e-9)
    for got, expected, kind in zip(_grads(case, rotated_grad), _grads(case, grad), case.arg_kinds, strict=False):
        assert_close(got, expected @ rotation if kind in FEATURE_ROWS else expected, rtol=1e-8)


# --- dtypes -----------------------------------------------------------------------------------------------------


@cases
@pytest.mark.parametrize("dtype", DTYPES)
def test_dtype_in_is_dtype_out_and_float32_agrees_with_float64(case, dtype):
    arrays64 = case.make_inputs(np.random.default_rng(5), np.float64)
    arrays = [
        a.astype(dtype) if kind in DIFFERENTIABLE else a for a, kind in zip(arrays64, case.arg_kinds, strict=True)
    ]
    value, grad = case(*arrays)
    assert type(value) is float
    for g, a in zip(_grads(case, grad), arrays, strict=False):
        assert g.dtype == dtype and g.shape == a.shape
    reference_value, reference_grad = case(*[a.astype(np.float64) if a.dtype == dtype else a for a in arrays])
    assert value == pytest.approx(reference_value, rel=TOLERANCES[np.dtype(dtype)])
    for got, expected in zip(_grads(case, grad), _grads(case, reference_grad), strict=True):
        assert_close(got, expected, rtol=TOLERANCES[np.dtype(dtype)])


# --- label dtypes: labels are identities, compared exactly whatever their integer dtype -------------------------

INT_DTYPES = [np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)]


def _extreme_class_values(arrays, label_args, dtypes):
    """Give every class a value at the edges of what the dtypes of the arrays holding it can represent (Python
    ints): the classes held by every label array take the common range's min, max, max - 1 (one float64 number
    with the max when that is 2⁶³ - 1), then min + 1, ...; a
    class held only by the first array takes the lowest values of its dtype, one held only by the last the highest
    (so int64 queries against uint64 references meet at -2⁶³ and 2⁶⁴ - 1). Returns {class: value}."""
    holders = {int(c): [j for j, i in enumerate(label_args) if c in arrays[i]] for i in label_args for c in arrays[i]}
    used, values = set(), {}
    for c in sorted(holders, key=lambda c: (len(holders[c]) < len(label_args), c)):  # the shared classes first
        held = holders[c]
        lo = max(int(np.iinfo(dtypes[j]).min) for j in held)
        hi = min(int(np.iinfo(dtypes[j]).max) for j in held)
        if len(held) == len(label_args):
            candidates = itertools.chain((lo, hi, hi - 1), range(lo + 1, hi - 1))
        elif held == [0]:
            candidates = range(lo, hi + 1)
        else:
            candidates = range(hi, lo - 1, -1)
        values[c] = next(v for v in candidates if v not in used)
        used.add(values[c])
    return values


def _with_unshared_classes(case, arrays, label_args):
    """For a query-vs-reference case: queries and references labelled 0, 1, 2, 0, ... (three shared classes, so
    that shared classes reach both ends of the common range) but for the last query, of a class no reference has,
    and the last reference, of a class no query has (so that labels of different signs meet references beyond
    int64)."""
    if len(label_args) < 2:
        return arrays
    arrays = list(arrays)
    for i, unshared in zip(label_args, (1000, 1001), strict=True):
        arrays[i] = np.arange(arrays[i].size) % 3
        arrays[i][-1] = unshared
    return arrays


@cases
def test_labels_of_every_integer_dtype_and_extreme_values_give_bitwise_the_same_result(case):
    """For every integer dtype of each label argument (int8..int64, uint8..uint64, labels and ref_labels of
    different dtypes), with the classes renamed to the extremes of those dtypes, the result is bitwise the one of
    the same batch labelled 0..C-1 in int64 (the ranks of the values, computed with Python ints). With centres,
    labels index their rows: they keep their values, in every dtype."""
    label_args = [i for i, kind in enumerate(case.arg_kinds) if kind == LABELS]
    if not label_args:
        pytest.skip("the loss takes no class labels")
    base = _with_unshared_classes(case, case.make_inputs(np.random.default_rng(11), np.float64), label_args)
    for dtypes in itertools.product(INT_DTYPES, repeat=len(label_args)):
        arrays = list(base)
        if any(kind in INDEXED_BY_LABELS for kind in case.arg_kinds):
            expected = arrays
            for i, dtype in zip(label_args, dtypes, strict=True):
                arrays[i] = base[i].astype(dtype)
        else:
            values = _extreme_class_values(base, label_args, dtypes)
            rank = {v: r for r, v in enumerate(sorted(values.values()))}
            expected = list(base)
            for i, dtype in zip(label_args, dtypes, strict=True):
                arrays[i] = np.array([values[int(c)] for c in base[i]], dtype=dtype)
                expected[i] = np.array([rank[values[int(c)]] for c in base[i]], dtype=np.int64)
        value, grad = case(*arrays)
        expected_value, expected_grad = case(*expected)
        assert value == expected_value, [d.name for d in dtypes]
        for got, want in zip(_grads(case, grad), _grads(case, expected_grad), strict=True):
            np.testing.assert_array_equal(got, want, err_msg=str([d.name for d in dtypes]))


# --- nothing active, edge cases ---------------------------------------------------------------------------------


@cases
@pytest.mark.parametrize("dtype", DTYPES)
def test_nothing_active_gives_zero_and_zero_gradient(case, dtype):
    if not case.inactive:
        assert case.no_inactive, f"{case.id}: register an input with nothing active, or say why none exists"
        pytest.skip(case.no_inactive)
    for description, arrays in case.inactive:
        arrays = [a.astype(dtype) if a.dtype.kind == "f" and i < case.n_diff else a for i, a in enumerate(arrays)]
        value, grad = case(*arrays)
        assert value == 0.0, description
        for g, a in zip(_grads(case, grad), arrays, strict=False):
            assert g.dtype == a.dtype and not np.any(g), description


def test_every_family_registers_an_input_with_nothing_active():
    """A configuration may have no such input (``no_inactive`` says why), its family may not; and a case does not
    claim both."""
    assert {_family(case) for case in REGISTRY if case.inactive} == {_family(case) for case in REGISTRY}
    assert not [case.id for case in REGISTRY if case.inactive and case.no_inactive]


@cases
def test_a_single_row_is_finite(case):
    arrays = case.make_inputs(np.random.default_rng(6), np.float64)
    value, grad = case(*_reindexed(case, arrays, {group: [0] for group in _rows_of_groups(case, arrays)}))
    assert np.isfinite(value)
    assert all(np.isfinite(g).all() for g in _grads(case, grad))


# --- bad input --------------------------------------------------------------------------------------------------


@cases
@pytest.mark.parametrize("margin", [1e19, 1e200, 1e308])
def test_a_margin_too_large_to_compute_is_refused_by_name(case, margin):
    """A margin that would overflow the loss to inf (1e200 squared, 1e308 plus a distance) raises a ValueError
    naming it, for every loss that takes ``margin``; never a silent inf."""
    arrays = case.make_inputs(np.random.default_rng(12), np.float64)
    try:
        case.loss(*arrays, **{**case.hyper, "margin": 0.25})  # a margin every loss that takes one accepts
    except TypeError:
        pytest.skip("the loss takes no margin")
    with pytest.raises(ValueError, match=r"^margin must be .*<=? "):
        case.loss(*arrays, **{**case.hyper, "margin": margin})


def _mutations(case, arrays):
    """(description, arrays, exception, text) for every bad-input mutation that applies to the loss's arguments."""
    for at, (name, kind) in enumerate(zip(case.arg_names, case.arg_kinds, strict=True)):

        def replaced(value, at=at):
            return [value if i == at else a for i, a in enumerate(arrays)]

        array = arrays[at]
        if kind in DIFFERENTIABLE:
            for bad in (np.nan, np.inf, -np.inf):
                poisoned = array.copy()
                poisoned.flat[-1] = bad
                yield f"{name} holds {bad}", replaced(poisoned), ValueError, f"{name} must be finite"
            yield (
                f"{name} of ints",
                replaced(array.astype(int)),
                TypeError,
                f"{name} must be a float32 or float64",
            )
            yield f"{name} of float16", replaced(array.astype(np.float16)), TypeError, "astype(np.float32)"
            yield f"{name} of strings", replaced(array.astype(str)), TypeError, name
            yield f"{name} empty", replaced(array[:0]), ValueError, f"{name} must not be empty"
            if kind in (EMBEDDINGS, CENTERS, SCORE_MATRIX):
                yield f"{name} 1-D", replaced(array[:, 0]), ValueError, f"{name} must be a 2-D array"
                yield f"{name} 3-D", replaced(array[None]), ValueError, f"{name} must be a 2-D array"
            if kind == CLASS_PARAMS:
                yield f"{name} 2-D", replaced(array[:, None]), ValueError, f"{name} must be a 1-D array"
            if at > 0:  # a second array of embeddings or scores that does not fit the first
                yield f"{name} misshapen", replaced(array[..., :-1]), ValueError, f"{name} must have"
        elif kind == LABELS:
            yield (
                f"{name} too short",
                replaced(array[:-1]),
                ValueError,
                f"{name} must have shape ({len(array)},)",
            )
            yield f"{name} as a column", replaced(array[:, None]), ValueError, "labels.ravel()"
            yield f"{name} as floats", replaced(array + 0.5), TypeError, f"{name} must be integer class ids"
        elif kind in (SIGNS, BINARY):
            yield f"{name} too short", replaced(array[:-1]), ValueError, f"{name} must have shape"
            wrong = array.copy()
            wrong[0] = 0 if kind == SIGNS else 2
            allowed = "(-1, 1)" if kind == SIGNS else "(0, 1)"
            yield (
                f"{name} with {wrong[0]}",
                replaced(wrong),
                ValueError,
                f"{name} must contain only the values {allowed}",
            )
        elif kind == RELEVANCE:
            yield f"{name} too narrow", replaced(array[:, :-1]), ValueError, f"{name} must have shape"
            yield f"{name} of floats", replaced(array.astype(float)), TypeError, f"{name} must be a boolean"


@cases
def test_bad_input_raises_a_named_error(case):
    arrays = case.make_inputs(np.random.default_rng(7), np.float64)
    checked = 0
    for description, bad_arrays, exception, text in _mutations(case, arrays):
        try:
            case(*bad_arrays)
        except exception as error:
            assert text in str(error), f"{description}: the message does not say {text!r}: {error}"
        else:
            pytest.fail(f"{description}: no {exception.__name__} raised")
        checked += 1
    assert checked >= 6, "every loss has several array arguments to mutate"


@cases
def test_bad_hyper_parameters_raise_named_errors(case):
    arrays = case.make_inputs(np.random.default_rng(8), np.float64)
    for bad, exception, text in case.bad_hyper:
        with pytest.raises(exception, match=re.escape(text)):
            case.loss(*arrays, **{**case.hyper, **bad})
    with pytest.raises(TypeError, match="unexpected keyword argument 'marign'"):
        case.loss(*arrays, **case.hyper, marign=1.0)
    # hyper-parameters are keyword-only: a number after the arrays is refused, as an unexpected positional argument
    # or, where the next slot is an optional array (triplets, beta, centers), by that array's own check
    with pytest.raises((TypeError, ValueError)):
        case.loss(*arrays, 1.0)


@cases
def test_the_return_structure_follows_the_arrays_given_never_their_types(case):
    """One gradient per differentiable array given, in order; a learnable parameter given as a Python number (a
    shared β) instead of an array (one per class) still gets its gradient, shaped like it: a 0-d array."""
    arrays = case.make_inputs(np.random.default_rng(9), np.float64)
    _, grad = case(*arrays)
    grads = _grads(case, grad)
    assert (isinstance(grad, tuple) and len(grad) == case.n_diff) or (case.n_diff == 1 and hasattr(grad, "shape"))
    for i, kind in enumerate(case.arg_kinds):
        if kind != CLASS_PARAMS:
            continue
        shared = [*arrays[:i], float(arrays[i][0]), *arrays[i + 1 :]]
        _, grad_shared = case(*shared)
        assert len(_grads(case, grad_shared)) == len(grads)
        assert np.shape(_grads(case, grad_shared)[i]) == ()


def test_every_family_declares_bad_hyper_parameters():
    families = {case.id.split("[")[0] for case in REGISTRY if case.bad_hyper}
    assert families == {case.id.split("[")[0] for case in REGISTRY}


# --- hypothesis: no NaN, no Inf, whatever the geometry ----------------------------------------------------------


# Row sizes from the bottom of each dtype's finite range to its top. Inside the range every loss promises (README:
# from 1e-35 in float32 and 1e-300 in float64 up to 1e10, the top of its narrowest part) the results must be finite;
# outside, a loss may refuse what is not representable.
AWKWARD_DECADES = {
    np.dtype(np.float32): [-44, -35, -30, -17, -8, 0, 4, 6, 9, 18, 30, 38],
    np.dtype(np.float64): [-320, -300, -170, -35, -8, 0, 6, 9, 18, 150, 200, 307],
}
PROMISED_EVERYWHERE = {np.dtype(np.float32): (1e-35, 1e10), np.dtype(np.float64): (1e-300, 1e10)}


@st.composite
def _awkward_inputs(draw, case):
    """Inputs with duplicated rows, ties, and tiny or huge norms, in float32 or float64."""
    dtype = draw(st.sampled_from(DTYPES))
    n = draw(st.integers(1, 6))
    features = draw(st.integers(1, 4))
    scale = 10.0 ** draw(st.sampled_from(AWKWARD_DECADES[np.dtype(dtype)]))
    grid = st.sampled_from([-1.0, -0.5, 0.0, 0.5, 1.0])  # a coarse grid makes ties and duplicates common
    arrays = []
    n_items = draw(st.integers(1, 6))
    # with column_groups, every row group but the first has n_items rows (items, references)
    groups = case.row_groups if case.column_groups else (0,) * len(case.arg_kinds)
    columns = case.column_groups or (None,) * len(case.arg_kinds)
    for kind, group, column_group in zip(case.arg_kinds, groups, columns, strict=True):
        rows = n if group == 0 else n_items
        if kind == EMBEDDINGS:
            shape = (rows, features)
        elif kind == CENTERS:
            shape = (2, features)  # one centre per class: the labels drawn here are 0 and 1
        elif kind == CLASS_PARAMS:
            shape = (2,)  # one entry per class
        elif kind == SCORES:
            shape = arrays[0].shape if arrays else (n,)
        elif kind in (SCORE_MATRIX, RELEVANCE):
            shape = (rows, n if column_group == 0 else n_items)
        else:
            shape = (n,)
        values = np.array(draw(st.lists(grid, min_size=int(np.prod(shape)), max_size=int(np.prod(shape)))))
        if kind in DIFFERENTIABLE:
            array = (scale * values.reshape(shape)).astype(dtype)
            if kind == SCORES and case.arg_names == ("x", "y"):
                array = np.abs(array)
        elif kind == LABELS:
            array = (values > 0).astype(int)
        elif kind == SIGNS:
            array = np.where(values >= 0, 1, -1)
        elif kind == RELEVANCE:
            array = values.reshape(shape) >= 0
        else:
            array = (values >= 0).astype(int)
        arrays.append(array)
    return arrays


@cases
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_values_and_gradients_are_always_finite(case, data):
    """Finite value and gradients in the inputs' dtypes; past the promised range, a ValueError saying what is not
    representable is the only other answer."""
    arrays = data.draw(_awkward_inputs(case))
    try:
        value, grad = case(*arrays)
    except ValueError as error:
        floats = [np.abs(a[a != 0]) for a in arrays if a.dtype.kind == "f"]
        low, high = PROMISED_EVERYWHERE[floats[0].dtype]
        sizes = np.concatenate(floats)
        assert sizes.size and not low <= sizes.min() <= sizes.max() < high, f"refused inside the promise: {error}"
        assert "not representable" in str(error), str(error)
        return
    assert np.isfinite(value)
    for g, a in zip(_grads(case, grad), arrays, strict=False):
        assert g.dtype == a.dtype and np.isfinite(g).all()


# --- backends ---------------------------------------------------------------------------------------------------


@cases
@pytest.mark.parametrize("dtype", DTYPES)
def test_numpy_and_numba_backends_agree(case, dtype):
    if not case.backends:
        pytest.skip("the loss has no kernels: it is elementwise NumPy")
    arrays = case.make_inputs(np.random.default_rng(9), dtype)
    reference_value, reference_grad = case(*arrays, backend="numpy")
    value, grad = case(*arrays, backend="numba")
    assert value == pytest.approx(reference_value, rel=TOLERANCES[np.dtype(dtype)])
    for got, expected in zip(_grads(case, grad), _grads(case, reference_grad), strict=True):
        assert_close(got, expected)


@cases
def test_blocks_of_rows_give_the_one_block_result(case, monkeypatch):
    """A batch loss run in blocks of 3 anchor rows (the row-block engine, as for a batch whose matrix does not fit
    the working memory) gives the one-block value and gradients, float64, to a relative 1e-12."""
    arrays = case.make_inputs(np.random.default_rng(11), np.float64)
    whole_value, whole_grad = case(*arrays)
    n_row_blocks = []
    whole_blocks = _batch.LabelledBatch.blocks

    def counted_blocks(batch):
        for block in whole_blocks(batch):
            n_row_blocks.append(block is not batch)
            yield block

    # 3 rows (1 for the N-pair loss's two or three pairs), so that a batch is more than one block
    monkeypatch.setattr(_batch, "block_rows", lambda n_rows, n_cols, itemsize, matrices=1: 3 if n_rows > 3 else 1)
    monkeypatch.setattr(_batch.LabelledBatch, "blocks", counted_blocks)
    value, grad = case(*arrays)
    if not any(n_row_blocks):
        pytest.skip("runs as one block: not a loss on the row-block engine (explicit rows, scores) or not yet on it")
    assert value == pytest.approx(whole_value, rel=1e-12, abs=1e-15)
    for got, expected in zip(_grads(case, grad), _grads(case, whole_grad), strict=True):
        assert_close(got, expected, rtol=1e-12)


@cases
def test_parallel_and_serial_numba_kernels_give_bitwise_the_same_result(case, monkeypatch):
    """Small matrices run the kernels on one thread (``_jit.SERIAL_BELOW``); the parallel ones must agree."""
    if not case.backends:
        pytest.skip("the loss has no kernels: it is elementwise NumPy")
    arrays = case.make_inputs(np.random.default_rng(10), np.float32)
    serial_value, serial_grad = case(*arrays, backend="numba")
    monkeypatch.setattr(_jit, "SERIAL_BELOW", 0)
    monkeypatch.setattr(_jit, "THREADS", "parallel")
    value, grad = case(*arrays, backend="numba")
    assert value == serial_value
    for got, expected in zip(_grads(case, grad), _grads(case, serial_grad), strict=True):
        np.testing.assert_array_equal(got, expected)


# --- array kinds ------------------------------------------------------------------------------------------------

# Another array library's arrays, made from NumPy's: (the array type, NumPy → it, it → NumPy).
ARRAY_KINDS = {
    "torch": (torch.Tensor, torch.from_numpy, lambda tensor: tensor.numpy()),
    "array-api-strict": (type(array_api_strict.asarray(0.0)), array_api_strict.asarray, np.from_dlpack),
}


@cases
@pytest.mark.parametrize("kind", ARRAY_KINDS)
def test_arrays_of_another_library_give_its_arrays_with_numpys_results(case, kind):
    """Every array given as a torch CPU tensor (or an array-api-strict array): the value is the same Python float
    and each gradient an array of that library, of the input's dtype, equal to NumPy's bit for bit."""
    array_type, from_numpy, to_numpy = ARRAY_KINDS[kind]
    arrays = case.make_inputs(np.random.default_rng(12), np.float32)
    value, grad = case(*arrays)
    got_value, got_grad = case(*(from_numpy(a) for a in arrays))
    assert type(got_value) is float and got_value == value
    for got, expected in zip(_grads(case, got_grad), _grads(case, grad), strict=True):
        assert isinstance(got, array_type)
        np.testing.assert_array_equal(to_numpy(got), expected, strict=True)
