"""Input checks shared by the public functions, and the refusals of results that are not representable (a check
that only one function makes, such as two options that exclude each other, is raised beside it).

Each public function validates its arguments once, here, and hands plain, trusted arrays to private code.
Messages name the argument, say what was expected and what was got, and where it helps, how to fix it.

Dtype policy: floating-point inputs must be float32 or float64 and keep that dtype (float32 in, float32 out).
float16 is refused rather than silently upcast, because the returned gradient must have the input's dtype and
float16 has too little range for squared distances. Integer, boolean and complex arrays are refused where a float
array is expected (differentiable inputs, and given distances such as ``classify_triplets``'), with the conversion
to make.
"""

import functools
import inspect
import math
import numbers
import operator

import numpy as np

from ._arrays import all_finite, is_gpu_array, largest_magnitude, numpy_dtype

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _as_array(value, name):
    if is_gpu_array(value):
        # numba's device arrays would copy themselves to the host here, and the loss would run on the CPU unseen
        raise TypeError(
            f"{name} must be a host array here; got a GPU array ({type(value).__name__}, with "
            "__cuda_array_interface__), which metricloss does not copy to the host unasked: copy it yourself "
            "(numba: .copy_to_host(), CuPy: .get(), torch: .cpu()); backend='cuda' then runs the kernels on the GPU. "
            "(triplet_loss, contrastive_loss, the lifted structure losses and pairwise_distances take GPU rows in "
            "place: see docs/cuda.md)"
        )
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be an array-like of numbers; got {type(value).__name__} ({error})") from None


def check_float_layout(dtype, shape, name, ndim):
    """The checks of a float array that need only its dtype and shape (host arrays and GPU arrays alike: the GPU
    path's :meth:`metricloss._kernels._gpu.Device.rows` makes them too):
    float32/float64, ``ndim`` dimensions (any rank if None), not empty."""
    dtype, shape = np.dtype(dtype), tuple(shape)
    if dtype not in FLOAT_DTYPES:
        if dtype == np.float16:
            fix = f"convert it with {name}.astype(np.float32)"
        elif dtype.kind in "iub":
            fix = f"convert it with {name}.astype(np.float64)"
        else:
            fix = "pass an array of float32 or float64 numbers"
        raise TypeError(f"{name} must be a float32 or float64 array; got dtype {dtype}: {fix}")
    if ndim is not None and len(shape) != ndim:
        expected = {1: "a 1-D array of shape (n,)", 2: "a 2-D array of shape (n_samples, n_features)"}[ndim]
        raise ValueError(f"{name} must be {expected}; got an array of shape {shape}")
    if math.prod(shape) == 0 or (len(shape) >= 1 and shape[0] == 0):
        raise ValueError(f"{name} must not be empty; got an array of shape {shape}")


def check_float_array(value, name, *, ndim=None):
    """Return ``value`` as a finite float32/float64 array with ``ndim`` dimensions (any rank if None)."""
    array = _as_array(value, name)
    if array.ndim == 0 and ndim and array.dtype.kind == "f":  # a number where an array belongs: most likely a
        raise TypeError(  # hyper-parameter passed by position (any other scalar gets its dtype's message below)
            f"{name} must be a {ndim}-D array; got the number {value!r} (hyper-parameters are keyword-only)"
        )
    check_float_layout(array.dtype, array.shape, name, ndim)
    if not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array))[0]
        raise ValueError(
            f"{name} must be finite; got {array[tuple(bad)]} at index {tuple(int(i) for i in bad)} "
            f"({np.count_nonzero(~np.isfinite(array))} non-finite values in all)"
        )
    return array


def check_embeddings(value, name="embeddings"):
    """A finite float32/float64 array of shape (n_samples, n_features)."""
    return check_float_array(value, name, ndim=2)


def promote(*arrays):
    """The float arrays in their common dtype (float64 if float32 and float64 are mixed), copied only if cast."""
    dtype = np.result_type(*arrays)
    return tuple(array.astype(dtype, copy=False) for array in arrays)


def check_same_shape(array, name, reference, reference_name):
    if array.shape != reference.shape:
        raise ValueError(f"{name} must have the same shape as {reference_name}, {reference.shape}; got {array.shape}")


def check_labels(value, n_samples, name="labels", *, against="embeddings"):
    """Integer class labels of shape (n_samples,)."""
    labels = _as_array(value, name)
    if labels.ndim == 0:  # a number where an array belongs: a hyper-parameter passed by position, most likely
        raise TypeError(f"{name} must be an array of integer class ids; got the scalar {value!r}")
    if labels.ndim != 1 or labels.shape[0] != n_samples:
        raise ValueError(
            f"{name} must have shape ({n_samples},) to match {against}; got {labels.shape}"
            + (": flatten it with labels.ravel()" if labels.size == n_samples else "")
        )
    if labels.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integer class ids; got dtype {labels.dtype}: convert with .astype(int)")
    return labels


def check_label_vector(value, name):
    """A non-empty 1-D array of integer class labels, on its own (no embeddings to match)."""
    labels = _as_array(value, name)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of class labels; got shape {labels.shape}")
    return check_labels(labels, labels.shape[0], name)


def check_targets(value, shape, name, *, allowed, against):
    """Targets of the given shape whose values all lie in ``allowed`` (e.g. (-1, 1) or (0, 1))."""
    targets = _as_array(value, name)
    if targets.shape != shape:
        raise ValueError(f"{name} must have shape {shape} to match {against}; got {targets.shape}")
    if targets.dtype.kind not in "iufb":
        raise TypeError(f"{name} must hold numbers {allowed}; got dtype {targets.dtype}")
    invalid = ~np.isin(targets, allowed)
    if invalid.any():
        raise ValueError(
            f"{name} must contain only the values {allowed}; got {targets[invalid][0]!r} "
            f"({np.count_nonzero(invalid)} invalid entries)"
        )
    return targets


def check_option(value, name, options):
    """``value`` must be one of the strings in ``options`` (a module-level tuple)."""
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}")
    return value


def check_scalar(value, name, *, low=None, high=None, low_inclusive=True, high_inclusive=True, why=""):
    """A finite real number in [low, high] (an open end where ``low_inclusive`` or ``high_inclusive`` is False)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value}")
    too_low = low is not None and (value < low if low_inclusive else value <= low)
    too_high = high is not None and (value > high if high_inclusive else value >= high)
    if too_low or too_high:
        lower = "" if low is None else f"{'>=' if low_inclusive else '>'} {low}"
        upper = "" if high is None else f"{'<=' if high_inclusive else '<'} {high}"
        bounds = " and ".join(b for b in (lower, upper) if b)
        raise ValueError(f"{name} must be {bounds}{why}; got {value}")
    return value


# The largest margin accepted: margins live on the scale of the distances, and a loss squares its margin (the
# contrastive loss) or sums it over B² terms into float32 gradients; at 1e18, m² = 1e36 stays below float32's
# 3.4e38, so no term or gradient of a valid margin overflows either float dtype (1e200 or 1e308 gave inf).
MAX_MARGIN = 1e18


def check_margin(value, name="margin", *, signed=False):
    """A margin: a finite real in [0, MAX_MARGIN] (0 is legitimate; a larger one would overflow the loss to inf).

    A loss's margin below 0 lets wrongly ordered pairs or triplets cost nothing (the loss is then minimal on
    embeddings that rank a negative above a positive), so losses refuse it. ``signed``: a threshold that only
    selects (a miner's margin), or whose loss keeps its minimum at the right ordering, may be negative too, down
    to −MAX_MARGIN."""
    if signed:
        value = check_scalar(value, name)
    else:
        value = check_scalar(
            value, name, low=0.0, why=" (below 0 a wrongly ordered pair or triplet would cost nothing)"
        )
    if abs(value) > MAX_MARGIN:
        bounds = f">= {-MAX_MARGIN:g} and <= {MAX_MARGIN:g}" if signed else f"<= {MAX_MARGIN:g}"
        raise ValueError(
            f"{name} must be {bounds} (margins are on the scale of the distances; a larger one makes the loss's "
            f"terms and gradients overflow to inf); got {value:g}"
        )
    return value


def check_bool(value, name):
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def check_count(value, name, *, low=1):
    """A Python or NumPy integer >= ``low`` (not a bool: True is no count, whatever Python says)."""
    if isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be an integer; got the bool {bool(value)}")
    try:
        count = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer; got {type(value).__name__}") from None
    if count < low:
        raise ValueError(f"{name} must be >= {low}; got {count}")
    return count


def check_given_together(ref_embeddings, ref_labels):
    """A ValueError naming the missing one where only one of a reference set's embeddings and labels is given."""
    if (ref_embeddings is None) != (ref_labels is None):
        given, missing = ("ref_embeddings", "ref_labels") if ref_labels is None else ("ref_labels", "ref_embeddings")
        raise ValueError(f"{missing} must be given with {given}; got only {given}")


def check_references(embeddings, ref_embeddings, ref_labels):
    """The reference set of a query-vs-reference batch (both or neither given), or (None, None)."""
    check_given_together(ref_embeddings, ref_labels)
    if ref_embeddings is None:
        return None, None
    ref = check_embeddings(ref_embeddings, "ref_embeddings")
    if ref.shape[1] != embeddings.shape[1]:
        raise ValueError(
            f"ref_embeddings must have {embeddings.shape[1]} features to match embeddings; got shape {ref.shape}"
        )
    return ref, check_labels(ref_labels, ref.shape[0], "ref_labels", against="ref_embeddings")


def check_class_indices(labels, n_classes, name="labels", *, rows_of="centers"):
    """Labels that index the rows of a per-class array (learnable centres): integers in [0, n_classes). ``labels``
    must already have passed :func:`check_labels`."""
    outside = (labels < 0) | (labels >= n_classes)
    if outside.any():
        at = int(np.argmax(outside))
        raise ValueError(
            f"{name} must be class indices in [0, {n_classes}) to index the rows of {rows_of} (one row per class); "
            f"got {labels[at]} at index {at} ({np.count_nonzero(outside)} out of range)"
        )
    return labels


def check_given(value, name, why):
    """An optional argument that this way of calling needs: anything but None. ``why`` says which call needs it."""
    if value is None:
        raise TypeError(f"{name} must be given {why}; got None")
    return value


def check_not_class_ids(value, name, fix):
    """Refuse a 1-D integer array (class ids, by their look) passed by position where embeddings belong, before
    :func:`check_embeddings` would call it a dtype problem; ``fix`` says how to pass the labels instead."""
    array = _as_array(value, name)
    if array.ndim == 1 and array.dtype.kind in "iu":
        raise TypeError(
            f"{name} must be a 2-D float array of embeddings; got 1-D integers, class ids by the look: {fix}"
        )
    return value


def check_relevance(value, shape, name="relevance", *, against="scores"):
    """A boolean matrix of the score matrix's shape: True where item j is relevant to (a positive of) query i."""
    relevance = _as_array(value, name)
    if relevance.shape != shape:
        raise ValueError(f"{name} must have shape {shape} to match {against} (queries × items); got {relevance.shape}")
    if relevance.dtype != np.bool_:
        raise TypeError(
            f"{name} must be a boolean array (True where the item is relevant to the query); got dtype "
            f"{relevance.dtype}: convert with {name}.astype(bool), or build it from index lists with "
            "metricloss.relevance_matrix"
        )
    return relevance


def check_index_vector(value, name):
    """A 1-D array of integer indices (an empty one of any dtype) as int64, or a TypeError naming ``name``. Bounds
    are the caller's to check: they depend on what the indices index."""
    array = _as_array(value, name)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise TypeError(f"{name} must be a 1-D integer index array; got dtype {array.dtype} and shape {array.shape}")
    return array.astype(np.int64)


def check_index_lists(value, n_items, name="positives"):
    """Each query's item indices, as a list of 1-D integer arrays or a 2-D integer array padded with -1: returned
    as a list of 1-D int64 arrays of indices in [0, n_items), padding dropped."""
    rows = value if isinstance(value, list | tuple) else list(_as_array(value, name))
    checked = []
    for i, row in enumerate(rows):
        row = _as_array(row, f"{name}[{i}]")
        if row.ndim > 1 or (row.size and row.dtype.kind not in "iu"):
            raise TypeError(
                f"{name} must be a list of 1-D integer arrays (or a 2-D integer array padded with -1); "
                f"got {name}[{i}] of shape {row.shape} and dtype {row.dtype}"
            )
        row = row.reshape(-1).astype(np.int64)
        row = row[row != -1]
        outside = (row < 0) | (row >= n_items)
        if outside.any():
            raise ValueError(
                f"{name} must hold item indices in [0, {n_items}) (-1 pads); got {row[outside][0]} in {name}[{i}]"
            )
        checked.append(row)
    return checked


def check_same_width(array, name, reference, reference_name):
    """Two arrays of embeddings whose rows live in the same space: the same number of columns (features)."""
    if array.shape[1] != reference.shape[1]:
        raise ValueError(
            f"{name} must have {reference.shape[1]} features to match {reference_name}; got shape {array.shape}"
        )
    return array


def check_rng(value, name="rng"):
    """A ``numpy.random.Generator``, an int seed (>= 0) or None (fresh entropy), returned as a Generator."""
    if isinstance(value, np.random.Generator):
        return value
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
        raise TypeError(f"{name} must be a numpy.random.Generator, an int seed or None; got {type(value).__name__}")
    if value is not None and value < 0:
        raise ValueError(f"{name} must be a seed >= 0; got {value}")
    return np.random.default_rng(value)


def check_feature_rows(value, name, embeddings):
    """A finite float32/float64 array of rows with as many features as ``embeddings`` (e.g. class centres)."""
    rows = check_embeddings(value, name)
    if rows.shape[1] != embeddings.shape[1]:
        raise ValueError(f"{name} must have {embeddings.shape[1]} features to match embeddings; got shape {rows.shape}")
    return rows


def check_every_class_present(counts, name="labels"):
    """Every class 0..len(counts)-1 has at least one sample (``counts`` from ``np.bincount``)."""
    missing = np.flatnonzero(counts == 0)
    if missing.size:
        raise ValueError(
            f"{name} must hold every class 0..{counts.size - 1}; no sample of class(es) {missing.tolist()[:10]}"
            + (" ..." if missing.size > 10 else "")
            + ": pass absent='mean' or 'zeros', or a smaller n_classes"
        )


def norm_bound(a):
    """An upper bound on a's largest row norm, as a Python float (inf where it overflows): √F · max |entry|."""
    return largest_magnitude(a) * math.sqrt(a.shape[1])


def not_representable(name, size, dtype, what, plural=True):
    """The message of a ValueError for a result past ``dtype``'s range: "{name} has {size}: {what} exceed(s) ...,
    so they are (it is) not representable; rescale {name}", suggesting float64 for float32."""
    dtype = np.dtype(dtype)
    verb, pronoun = ("exceed", "they are") if plural else ("exceeds", "it is")
    wider = " or pass float64" if dtype == np.float32 else ""
    return (
        f"{name} has {size}: {what} {verb} {dtype}'s largest finite number, {float(np.finfo(dtype).max):.3g}, so "
        f"{pronoun} not representable; rescale {name}{wider}"
    )


def refuse_overflow(result, bound, arrays, names, what):
    """Raise a ValueError naming the argument with the largest rows if ``result`` (a matrix whose entries are at
    most ``bound`` in magnitude) has overflowed its dtype's range."""
    dtype = numpy_dtype(result)
    limit = float(np.finfo(dtype).max)
    if bound <= limit or all_finite(result):
        return
    norms = [norm_bound(a) for a in arrays]
    name = names[int(np.argmax(norms))]
    wider = " or pass float64" if dtype == np.float32 else ""
    if max(norms) < 1:  # not too large: so small that dividing by their distances or norms overflows
        raise ValueError(
            f"{name} has rows of norm at most {max(norms):.3g}: their {what} divide by something that small and "
            f"exceed {dtype}'s largest finite number, {limit:.3g}, so they are not representable; rescale "
            f"{name}{wider}"
        )
    raise ValueError(not_representable(name, f"rows of norm up to {max(norms):.3g}", dtype, f"their {what}"))


def finite_or_refused(loss):
    """Decorate a loss returning ``(value, grads)``: on finite inputs it returns a finite value and finite gradients,
    or raises a ValueError naming its largest input where they are not representable (a sum of squared distances
    past float64's top, a gradient past float32's) — never Inf or NaN. Inside the loss an overflow runs on
    silently, to an Inf that this one check catches, instead of a guard beside every sum and square."""
    signature = inspect.signature(loss)

    @functools.wraps(loss)
    def checked(*args, **kwargs):
        with np.errstate(over="ignore", invalid="ignore"):
            value, grads = loss(*args, **kwargs)
        arrays = grads if isinstance(grads, tuple) else (grads,)
        if math.isfinite(value) and all(all_finite(grad) for grad in arrays):  # on the host or on a GPU
            return value, grads
        given = signature.bind(*args, **kwargs).arguments
        largest = {name: largest_magnitude(arg) for name, arg in given.items() if _is_float_input(arg)}
        name = max(largest, key=largest.get)
        if math.isfinite(value):
            dtype = next(numpy_dtype(grad) for grad in arrays if not all_finite(grad))
            what = "its gradient"
        else:
            dtype, what = np.float64, "the loss value"
        raise ValueError(not_representable(name, f"entries up to {largest[name]:.3g}", dtype, what, plural=False))

    return checked


def _is_float_input(value):
    """A float32/float64 array (on the host or a GPU) or a Python float among a loss's arguments."""
    if is_gpu_array(value):
        return numpy_dtype(value) in FLOAT_DTYPES
    return not isinstance(value, str) and np.asarray(value).dtype in FLOAT_DTYPES
