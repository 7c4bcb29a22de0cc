"""Mining within a batch: which of its triplets and pairs to train on. Everything here returns indices, never
losses.

* :func:`classify_triplets` and :func:`triplet_counts`: easy, semi-hard and hard triplets;
* :func:`mine_triplets`: every triplet of a kind in a batch, optionally capped per anchor;
* :func:`mine_pairs`: the positive and negative pairs (all, or the contrastive loss's active ones), and
  :func:`pairs_to_triplets`, the triplets they hold, for a triplet loss;
* :func:`batch_triplets`: one triplet per anchor (batch-hard, batch-easy-hard);
* :func:`distance_weighted_negatives`: one negative per positive pair, drawn against the distances' density on
  the sphere (Wu et al. 2017).

What forms the batches, and mining over a whole dataset (P×K batches, random and rank-window negatives,
:func:`~metricloss.sampling.mine_dataset`), is :mod:`metricloss.sampling`'s.

Kinds of triplets (a, p, n), with margin m and the convention of the losses (a triplet is active iff
d_an < d_ap + m):

==============  ================================  ============================================================
kind            condition                         in words
==============  ================================  ============================================================
``"easy"``      d_an >= d_ap + m                  already satisfied: no loss
``"semihard"``  d_ap <= d_an < d_ap + m           negative farther than the positive, but inside the margin
``"hard"``      d_an < d_ap and d_an < d_ap + m   active, and the negative closer than the positive
==============  ================================  ============================================================

The three kinds split the valid triplets for every m. The miners here take m < 0 too, as
pytorch-metric-learning's ``TripletMarginMiner`` does: the active triplets are then the ones whose negative is
closer than the positive by more than −m, all of them hard, and none is semi-hard. For m >= 0 a hard triplet is
simply one with d_an < d_ap. The losses refuse m < 0, where a wrongly ordered triplet would cost nothing.

The online miners (:func:`triplet_counts`, :func:`mine_triplets`, :func:`mine_pairs`, :func:`batch_triplets`,
:func:`distance_weighted_negatives`) run in blocks of anchor rows, as the batch losses do: memory O(block · R) plus
their output, with the working memory of :func:`metricloss.set_config`; their results, random draws included, are
those of one block.

Randomness comes from a ``numpy.random.Generator``: every function that samples takes ``rng``, a Generator or an
int seed >= 0 (None: fresh entropy, as ``numpy.random.default_rng``); anything else is refused, naming ``rng``.
Labels may have any integer dtype, mixed between anchors and references: they are compared as identities,
exactly (``_batch.comparable_labels``).
"""

import numpy as np

from ._arrays import array_route
from ._batch import candidate_masks, labelled_batch
from ._kernels import SELECTION_MODES
from ._validation import (
    check_count,
    check_float_array,
    check_index_vector,
    check_margin,
    check_option,
    check_rng,
    check_same_shape,
    check_scalar,
)

TRIPLET_KINDS = ("easy", "semihard", "hard")
MINED_TRIPLETS = ("all", "active", "easy", "semihard", "hard")
MINED_PAIRS = ("all", "active")
SELECTIONS = ("hardest", "easiest", "semihard")


@array_route
def classify_triplets(d_ap, d_an, *, margin=1.0):
    """The kind of each triplet from its two distances: 0 easy, 1 semi-hard, 2 hard (indices into
    ``TRIPLET_KINDS``), for colouring or counting.

    Parameters
    ----------
    d_ap : float32 or float64 array, any shape
        Each triplet's anchor-positive distance.
    d_an : float32 or float64 array, the shape of ``d_ap``
        Each triplet's anchor-negative distance.
    margin : float, default 1.0
        m of the module docstring's table: the triplet is active iff d_an < d_ap + m (m < 0: see there).

    Returns
    -------
    kinds : int8 array, the shape of ``d_ap``
        0 (easy), 1 (semi-hard) or 2 (hard).

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss.mining import TRIPLET_KINDS, classify_triplets
    >>> kinds = classify_triplets(np.array([1.0, 1.0, 1.0]), np.array([2.5, 1.5, 0.5]), margin=1.0)
    >>> [TRIPLET_KINDS[k] for k in kinds]
    ['easy', 'semihard', 'hard']
    """
    d_ap = check_float_array(d_ap, "d_ap")
    d_an = check_float_array(d_an, "d_an")
    check_same_shape(d_an, "d_an", d_ap, "d_ap")
    margin = check_margin(margin, signed=True)
    d_ap, d_an = d_ap.astype(np.float64), d_an.astype(np.float64)
    active = d_an < d_ap + margin
    kinds = np.zeros(d_ap.shape, dtype=np.int8)
    kinds[active] = 1
    kinds[active & (d_an < d_ap)] = 2
    return kinds


@array_route
def triplet_counts(
    embeddings, labels, *, margin=1.0, distance="euclidean", ref_embeddings=None, ref_labels=None, backend=None
):
    """How many of a batch's valid triplets are easy, semi-hard and hard, and the fraction that is active
    (semi-hard or hard: the ones batch-all averages over). O(B·R log R) time; runs in blocks of anchor rows
    (memory O(block · R), :func:`metricloss.set_config`'s ``working_memory``).

    Parameters
    ----------
    embeddings : array of shape (B, F), float32 or float64
    labels : int array of shape (B,)
    margin : float, default 1.0
        m: a triplet is active iff d_an < d_ap + m (m < 0: the module docstring says what the kinds become).
    distance : {"euclidean", "sqeuclidean", "cosine", "dot", "snr"}, default "euclidean"
    ref_embeddings : array of shape (R, F), optional
        A reference set: the anchors are the embeddings, positives and negatives the references (p and n index
        them). Give ``ref_labels`` with it.
    ref_labels : int array of shape (R,), optional
    backend : {"numpy", "numba", "cuda"}, optional
        The kernel module; default ``"numba"``. ``"cuda"`` (the ``[cuda]`` extra) runs the kernels on an NVIDIA GPU,
        host arrays copied in and out (``docs/cuda.md``).

    Returns
    -------
    counts : dict
        ``"valid"``, ``"easy"``, ``"semihard"``, ``"hard"`` (ints; a valid triplet has an anchor, a positive
        other than itself and a negative) and ``"active_fraction"`` (a float; 0.0 without a valid triplet).

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss.mining import triplet_counts
    >>> triplet_counts(np.array([[0.0], [0.5], [0.8], [3.0]]), np.array([0, 0, 1, 1]))
    {'valid': 8, 'easy': 2, 'semihard': 3, 'hard': 3, 'active_fraction': 0.75}
    """
    margin = check_margin(margin, signed=True)
    batch = _batch_in_blocks(embeddings, labels, distance, ref_embeddings, ref_labels, backend)
    counts = np.zeros(3, dtype=np.int64)  # valid, active, semi-hard triplets
    for block in batch.blocks():
        rows = (block.d, block.classes, block.self_offset, margin)
        scratch = np.empty_like(block.d)  # the kernel writes a cotangent too; counting ignores it
        _, active, valid = block.kernels.batch_all_triplets(*rows, False, scratch, False)
        _, semihard, _ = block.kernels.batch_all_triplets(*rows, True, scratch, False)
        counts += (valid.sum(), active.sum(), semihard.sum())
    valid, active, semihard = (int(count) for count in counts)
    return {
        "valid": valid,
        "easy": valid - active,
        "semihard": semihard,
        "hard": active - semihard,
        "active_fraction": active / valid if valid else 0.0,
    }


def _batch_in_blocks(embeddings, labels, distance, ref_embeddings, ref_labels, backend):
    """The checked labelled batch of a miner, read in blocks of anchor rows (:meth:`LabelledBatch.blocks`)."""
    return labelled_batch(
        embeddings,
        labels,
        distance=distance,
        ref_embeddings=ref_embeddings,
        ref_labels=ref_labels,
        backend=backend,
        in_blocks=True,
    )


def _concatenated(mined, n_arrays):
    """The blocks' (or anchors') index arrays, column by column, as ``n_arrays`` int64 arrays (empty for none)."""
    if not mined:
        return tuple(np.zeros(0, dtype=np.int64) for _ in range(n_arrays))
    return tuple(np.concatenate(column).astype(np.int64) for column in zip(*mined, strict=True))


def _band(neg_sorted, d_ap, margin, kind):
    """For each positive, the slice [lo, hi) of the sorted negative distances that form triplets of ``kind``."""
    n_neg = neg_sorted.size
    inside_margin = np.searchsorted(neg_sorted, d_ap + margin, side="left")  # d_an < d_ap + m
    closer = np.searchsorted(neg_sorted, d_ap, side="left")  # d_an < d_ap
    zeros, ends = np.zeros_like(closer), np.full_like(closer, n_neg)
    lo, hi = {
        "all": (zeros, ends),
        "active": (zeros, inside_margin),
        "hard": (zeros, np.minimum(closer, inside_margin)),  # m < 0: only the active ones
        "semihard": (closer, inside_margin),
        "easy": (inside_margin, ends),
    }[kind]
    return lo, np.maximum(hi, lo)


@array_route
def mine_triplets(
    embeddings,
    labels,
    *,
    kind="all",
    margin=1.0,
    distance="euclidean",
    max_per_anchor=None,
    rng=None,
    ref_embeddings=None,
    ref_labels=None,
    backend=None,
):
    """Index arrays (a, p, n) of every triplet of ``kind`` in a batch, or at most ``max_per_anchor`` per anchor
    sampled uniformly without replacement.

    ``kind`` is ``"all"`` (every valid triplet), ``"active"`` (semi-hard or hard, the ones with a non-zero loss),
    ``"easy"``, ``"semihard"`` or ``"hard"`` (module docstring). With references, p and n index them.

    Per anchor, the negatives' distances are sorted once and each positive's band is a slice of them, so the
    work is O(B·R log R) plus the output. It runs in blocks of anchor rows, so memory is O(block · R) plus the
    output (:func:`metricloss.set_config`'s ``working_memory``): with a cap, O(B · cap) however many triplets the
    batch holds. The anchors draw their caps in order, so the draws do not depend on the blocks. The result is
    sorted by anchor, then positive, then negative distance.

    Parameters
    ----------
    embeddings : array of shape (B, F), float32 or float64
    labels : int array of shape (B,)
    kind : {"all", "active", "easy", "semihard", "hard"}, default "all"
    margin : float, default 1.0
        m of the kinds' conditions (m < 0: the module docstring says what the kinds become).
    distance : {"euclidean", "sqeuclidean", "cosine", "dot", "snr"}, default "euclidean"
    max_per_anchor : int >= 1, optional
        At most this many triplets per anchor, sampled uniformly without replacement; None keeps them all.
    rng : numpy.random.Generator, int seed >= 0, or None
        The sampler of the cap (module docstring); unused without ``max_per_anchor``.
    ref_embeddings : array of shape (R, F), optional
        A reference set: p and n index it. Give ``ref_labels`` with it.
    ref_labels : int array of shape (R,), optional
    backend : {"numpy", "numba", "cuda"}, optional
        The kernel module of the distances; default ``"numba"``. ``"cuda"`` (the ``[cuda]`` extra) runs them on an
        NVIDIA GPU, host arrays copied in and out (``docs/cuda.md``).

    Returns
    -------
    anchors, positives, negatives : int64 arrays of one length
        The triplets, empty where there is none.

    Notes
    -----
    pytorch-metric-learning's ``TripletMarginMiner(margin, type_of_triplets=t)`` mines ``kind="active"`` for
    t = "all", and "easy", "semihard", "hard" alike, for negative margins too; its boundaries differ at exact ties
    (its hard triplets include d_an = d_ap, its semi-hard ones d_an = d_ap + m). It has no cap per anchor (its
    issues #193, #645).

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss.mining import mine_triplets
    >>> a, p, n = mine_triplets(np.array([[0.0], [0.5], [0.8], [3.0]]), np.array([0, 0, 1, 1]), kind="hard")
    >>> a, p, n  # B: C (0.3) is closer than A (0.5); C: B (0.3) and A (0.8) are closer than D (2.2)
    (array([1, 2, 2]), array([0, 3, 3]), array([2, 1, 0]))
    """
    check_option(kind, "kind", MINED_TRIPLETS)
    margin = check_margin(margin, signed=True)
    if max_per_anchor is not None:
        max_per_anchor = check_count(max_per_anchor, "max_per_anchor")
    rng = check_rng(rng, "rng")
    batch = _batch_in_blocks(embeddings, labels, distance, ref_embeddings, ref_labels, backend)
    mined = []
    for block in batch.blocks():
        is_positive, is_negative = candidate_masks(block)
        for a in range(block.d.shape[0]):  # a row of the block: anchor block.start + a
            positives, negatives = np.flatnonzero(is_positive[a]), np.flatnonzero(is_negative[a])
            if positives.size == 0 or negatives.size == 0:
                continue
            d = block.row(a)
            order = np.argsort(d[negatives], kind="stable")
            lo, hi = _band(d[negatives[order]], d[positives], margin, kind)
            counts = hi - lo
            total = int(counts.sum())
            if total == 0:
                continue
            picks = np.arange(total)
            if max_per_anchor is not None and total > max_per_anchor:
                picks = np.sort(rng.choice(total, size=max_per_anchor, replace=False))
            ends = np.cumsum(counts)
            which = np.searchsorted(ends, picks, side="right")  # the positive each pick belongs to
            offset = picks - (ends - counts)[which]
            mined.append((np.full(picks.size, block.start + a), positives[which], negatives[order[lo[which] + offset]]))
    return _concatenated(mined, 3)


@array_route
def mine_pairs(
    embeddings,
    labels,
    *,
    kind="active",
    margin=1.0,
    pos_margin=0.0,
    distance="euclidean",
    ref_embeddings=None,
    ref_labels=None,
    backend=None,
):
    """Index arrays (a1, p, a2, n) of a batch's positive pairs (a1, p) and negative pairs (a2, n): all of them, or
    (``kind="active"``) the ones :func:`metricloss.contrastive_loss` charges with these margins, positive pairs
    farther than m⁺ and negative pairs closer than m.

    Pairs are ordered, (i, j) and (j, i) both, never (i, i); with references, a1 and a2 index the embeddings and
    p and n the references. Each array is sorted by anchor, then by the other index. O(B·R) time; runs in blocks
    of anchor rows, so memory is O(block · R) plus the output (:func:`metricloss.set_config`'s ``working_memory``).

    Parameters
    ----------
    embeddings : array of shape (B, F), float32 or float64
    labels : int array of shape (B,)
    kind : {"all", "active"}, default "active"
    margin : float, default 1.0
        m: with ``kind="active"``, the negative pairs with d < m.
    pos_margin : float, default 0.0
        m⁺: with ``kind="active"``, the positive pairs with d > m⁺.
    distance : {"euclidean", "sqeuclidean", "cosine", "dot", "snr"}, default "euclidean"
    ref_embeddings : array of shape (R, F), optional
        A reference set: p and n index it. Give ``ref_labels`` with it.
    ref_labels : int array of shape (R,), optional
    backend : {"numpy", "numba", "cuda"}, optional
        The kernel module of the distances; default ``"numba"``. ``"cuda"`` (the ``[cuda]`` extra) runs them on an
        NVIDIA GPU, host arrays copied in and out (``docs/cuda.md``).

    Returns
    -------
    a1, p, a2, n : int64 arrays
        The positive pairs (a1[k], p[k]) and the negative pairs (a2[k], n[k]); empty where there is none.

    Notes
    -----
    pytorch-metric-learning's ``PairMarginMiner(pos_margin, neg_margin)`` is ``kind="active", pos_margin=pos_margin,
    margin=neg_margin`` (tests/test_mining.py pins it); like its miners, these take margins of either sign (they
    only select). A triplet loss takes pairs through :func:`pairs_to_triplets`.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss.mining import mine_pairs
    >>> a1, p, a2, n = mine_pairs(np.array([[0.0], [0.5], [0.8], [3.0]]), np.array([0, 0, 1, 1]), pos_margin=1.0)
    >>> a1, p  # only C and D (2.2 apart) are a positive pair farther than 1
    (array([2, 3]), array([3, 2]))
    >>> a2, n  # negative pairs closer than 1: A–C (0.8), B–C (0.3)
    (array([0, 1, 2, 2]), array([2, 2, 0, 1]))
    """
    check_option(kind, "kind", MINED_PAIRS)
    margin = check_margin(margin, signed=True)
    pos_margin = check_margin(pos_margin, "pos_margin", signed=True)
    batch = _batch_in_blocks(embeddings, labels, distance, ref_embeddings, ref_labels, backend)
    mined = []
    for block in batch.blocks():
        positive, negative = candidate_masks(block)
        if kind == "active":
            positive &= block.d > pos_margin
            negative &= block.d < margin
        (a1, p), (a2, n) = np.nonzero(positive), np.nonzero(negative)
        mined.append((a1 + block.start, p, a2 + block.start, n))
    return _concatenated(mined, 4)


@array_route
def pairs_to_triplets(positive_anchors, positives, negative_anchors, negatives):
    """The triplets (a, p, n) of pairs: every positive pair (a, p) with every negative pair (a, n) of the same
    anchor, ordered by positive pair, then by negative pair.

    This is what pytorch-metric-learning does when a pair miner (index tuples (a1, p, a2, n): ``PairMarginMiner``,
    ``MultiSimilarityMiner``, :func:`mine_pairs`) feeds a triplet loss (``convert_to_triplets``), without its
    P×N comparison matrix: the negative pairs are sorted by anchor once and each positive pair takes a slice, so
    O((P + N) log N) time plus the output.

    Parameters
    ----------
    positive_anchors : int array of shape (P,)
        a1, the positive pairs' anchors.
    positives : int array of shape (P,)
        p, their positives.
    negative_anchors : int array of shape (N,)
        a2, the negative pairs' anchors.
    negatives : int array of shape (N,)
        n, their negatives.

    Returns
    -------
    anchors, positives, negatives : int64 arrays of one length
        The triplets, for ``triplet_loss(..., triplets=...)``; empty where no anchor has both kinds of pair.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss.mining import pairs_to_triplets
    >>> pairs_to_triplets(np.array([0, 1, 0]), np.array([1, 0, 4]), np.array([0, 0, 2]), np.array([2, 3, 0]))
    (array([0, 0, 0, 0]), array([1, 1, 4, 4]), array([2, 3, 2, 3]))
    """
    a1, p = _index_vectors((positive_anchors, positives), ("positive_anchors", "positives"))
    a2, n = _index_vectors((negative_anchors, negatives), ("negative_anchors", "negatives"))
    order = np.argsort(a2, kind="stable")
    sorted_anchors = a2[order]
    lo = np.searchsorted(sorted_anchors, a1, side="left")
    counts = np.searchsorted(sorted_anchors, a1, side="right") - lo
    pair = np.repeat(np.arange(a1.size), counts)  # the positive pair of each triplet
    starts = np.cumsum(counts) - counts
    negative_pair = order[np.repeat(lo - starts, counts) + np.arange(counts.sum())]
    return a1[pair], p[pair], n[negative_pair]


def _index_vectors(arrays, names):
    """Two 1-D arrays of non-negative integer indices of one length, as int64."""
    checked = [check_index_vector(array, name) for array, name in zip(arrays, names, strict=True)]
    for array, name in zip(checked, names, strict=True):
        if array.size and array.min() < 0:
            raise ValueError(f"{name} must hold indices >= 0; got {array.min()}")
    if checked[0].size != checked[1].size:
        raise ValueError(
            f"{names[1]} must have one entry per {names[0][:-1]}: {checked[0].size}; got {checked[1].size}"
        )
    return checked


@array_route
def batch_triplets(
    embeddings,
    labels,
    *,
    positive="hardest",
    negative="hardest",
    distance="euclidean",
    positive_range=None,
    negative_range=None,
    ref_embeddings=None,
    ref_labels=None,
    backend=None,
):
    """One triplet per anchor, (a, p, n) index arrays; anchors without a valid choice are left out.

    ``positive``: ``"hardest"`` (farthest), ``"easiest"`` (closest), or ``"semihard"`` (the farthest positive
    closer than the chosen negative). ``negative``: ``"hardest"`` (closest), ``"easiest"`` (farthest), or
    ``"semihard"`` (the closest negative farther than the chosen positive). Not both semi-hard. Ties go to the
    lowest index. A semi-hard choice that does not exist (no negative farther than the positive, no positive
    closer than the negative) leaves its anchor out: there is no fallback, unlike
    ``triplet_loss(mining="semihard")``, which then takes the farthest negative. Runs in blocks of anchor rows:
    memory O(block · R) (:func:`metricloss.set_config`'s ``working_memory``).

    Parameters
    ----------
    embeddings : array of shape (B, F), float32 or float64
    labels : int array of shape (B,)
    positive : {"hardest", "easiest", "semihard"}, default "hardest"
    negative : {"hardest", "easiest", "semihard"}, default "hardest"
    distance : {"euclidean", "sqeuclidean", "cosine", "dot", "snr"}, default "euclidean"
    positive_range : tuple (low, high) of floats, optional
        Only positives at a distance in [low, high] are candidates (pytorch-metric-learning's
        ``allowed_pos_range``); an anchor with none is left out. Default: every positive.
    negative_range : tuple (low, high) of floats, optional
        The same for the negatives (``allowed_neg_range``).
    ref_embeddings : array of shape (R, F), optional
        A reference set: the anchors are the embeddings, positives and negatives the references (p and n index
        them). Give ``ref_labels`` with it.
    ref_labels : int array of shape (R,), optional
    backend : {"numpy", "numba", "cuda"}, optional
        The kernel module; default ``"numba"``. ``"cuda"`` (the ``[cuda]`` extra) runs the kernels on an NVIDIA GPU,
        host arrays copied in and out (``docs/cuda.md``).

    Returns
    -------
    anchors, positives, negatives : int64 arrays of one length
        One triplet per anchor that has a valid choice, by increasing anchor.

    Notes
    -----
    pytorch-metric-learning's ``BatchHardMiner()`` is the default (hardest, hardest);
    ``BatchEasyHardMiner(pos_strategy, neg_strategy, allowed_pos_range, allowed_neg_range)`` is the same names
    with "hard" for "hardest" and "easy" for "easiest" and the ranges as ``positive_range`` and
    ``negative_range`` (its defaults: ``positive="easiest", negative="semihard"``, Xuan et al. 2020;
    tests/test_mining.py pins it). Its ``"all"`` strategy returns pairs, which its triplet loss pairs up: both
    ``"all"`` is every triplet (``mining="all"``); ``pos_strategy="all"`` is
    ``pairs_to_triplets(*mine_pairs(x, labels, kind="all")[:2], a, n)`` with (a, _, n) from this function's
    negative choice, and the other way round for ``neg_strategy="all"``; PML applies no range to the "all" side.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss.mining import batch_triplets
    >>> batch_triplets(np.array([[0.0], [0.5], [0.8], [3.0]]), np.array([0, 0, 1, 1]))
    (array([0, 1, 2, 3]), array([1, 0, 3, 2]), array([2, 2, 1, 1]))
    """
    check_option(positive, "positive", SELECTIONS)
    check_option(negative, "negative", SELECTIONS)
    if positive == negative == "semihard":
        raise ValueError("positive and negative cannot both be 'semihard': each is chosen relative to the other")
    batch = _batch_in_blocks(embeddings, labels, distance, ref_embeddings, ref_labels, backend)
    ranges = (_check_range(positive_range, "positive_range"), _check_range(negative_range, "negative_range"))
    mined = []
    for block in batch.blocks():
        d = block.d
        if ranges != (None, None):
            d = _outside_ranges_never_chosen(block, positive, negative, *ranges)
        modes = SELECTION_MODES[positive], SELECTION_MODES[negative]
        p, n = block.kernels.select_per_anchor(d, block.classes, block.self_offset, *modes)
        chosen = (p >= 0) & (n >= 0)
        rows = np.flatnonzero(chosen)
        chosen[rows] = np.isfinite(d[rows, p[rows]]) & np.isfinite(d[rows, n[rows]])  # not a candidate out of range
        anchors = np.flatnonzero(chosen)
        mined.append((anchors + block.start, p[anchors], n[anchors]))
    return _concatenated(mined, 3)


def _check_range(value, name):
    """A (low, high) pair of floats with low <= high (either may be ±inf), or None."""
    if value is None:
        return None
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise TypeError(f"{name} must be a pair (low, high) of distances; got {value!r}")
    low = check_scalar(value[0], f"{name}[0]", low=-np.inf)
    high = check_scalar(value[1], f"{name}[1]", low=low, why=f" (at least {name}[0])")
    return low, high


def _outside_ranges_never_chosen(batch, positive, negative, positive_range, negative_range):
    """A copy of the distances in which each candidate outside its range is ±inf, the value its selection rule
    takes last (−inf for a largest-distance rule, +inf for a smallest-distance one); a choice that is still ±inf
    is then no choice. Semi-hard rules pick the farthest positive below a threshold and the closest negative above
    one: −inf and +inf too."""
    positives, negatives = candidate_masks(batch)
    d = batch.d.astype(np.float64)
    last_positive = np.inf if positive == "easiest" else -np.inf  # easiest: the closest positive
    last_negative = -np.inf if negative == "easiest" else np.inf  # easiest: the farthest negative
    for mask, bounds, last in ((positives, positive_range, last_positive), (negatives, negative_range, last_negative)):
        if bounds is not None:
            d[mask & ((d < bounds[0]) | (d > bounds[1]))] = last
    return d


@array_route
def distance_weighted_negatives(
    embeddings,
    labels,
    *,
    cutoff=0.5,
    nonzero_loss_cutoff=1.4,
    rng=None,
    ref_embeddings=None,
    ref_labels=None,
    backend=None,
):
    r"""Distance-weighted sampling (Wu et al. 2017): for every positive pair (a, p), one negative n drawn with
    probability inversely proportional to the density of its distance to the anchor on the unit sphere; index
    arrays (a, p, n), one triplet per positive pair, sorted by anchor then positive.

    .. math::

        \Pr(n \mid a) \propto \frac{1}{q(\max(d_{an}, \lambda))}\, \mathbb 1[d_{an} < \tau], \qquad
        q(d) \propto d^{\,k-2} \Big(1 - \frac{d^2}{4}\Big)^{\frac{k-3}{2}}

    with k the embedding dimension, λ = ``cutoff`` (distances clipped below: the density's pole at 0 would give
    the nearest negatives all the weight) and τ = ``nonzero_loss_cutoff`` (negatives this far have no loss under
    the margin loss: weight 0). The distances are Euclidean, and q is the density of the distance between two
    points drawn uniformly on the unit sphere: normalise the embeddings first.

    The weights are computed in logs, log w = (2 − k) log d − ((k − 3)/2) log(1 − d²/4), in float64 whatever the
    embeddings' dtype, shifted by each anchor's own largest log-weight before exponentiating: the largest weight of
    every row is exactly 1, so no row underflows to all zeros, even at k = 1024 (where q itself is below the
    smallest float64 for most distances) or in float32.

    It runs in blocks of anchor rows, memory O(block · R) (:func:`metricloss.set_config`'s ``working_memory``):
    the weights are per anchor, and the anchors draw in order, one uniform number per positive pair, so the
    draws do not depend on the blocks.

    *Fallback.* An anchor whose negatives are all at d >= τ (or at d >= 2, off the sphere, where log q is not
    defined) draws its negative uniformly among all its negatives, so that each positive pair still yields a
    triplet. An anchor without a negative, or without a positive, yields nothing.

    Parameters
    ----------
    embeddings : array of shape (B, F), float32 or float64
        Points on the unit sphere (L2-normalised), as the paper assumes.
    labels : int array of shape (B,)
    cutoff : float > 0, default 0.5
        λ, the paper's.
    nonzero_loss_cutoff : float > 0, default 1.4
        τ, the paper's (β + α = 1.2 + 0.2 of its margin loss).
    rng : numpy.random.Generator, int seed >= 0, or None
        The sampler (module docstring).
    ref_embeddings : array of shape (R, F), optional
        A reference set: anchors are the embeddings, positives and negatives the references.
    ref_labels : int array of shape (R,), optional
    backend : {"numpy", "numba", "cuda"}, optional
        The kernel module of the distances; default ``"numba"``. ``"cuda"`` (the ``[cuda]`` extra) runs them on an
        NVIDIA GPU, host arrays copied in and out (``docs/cuda.md``).

    Returns
    -------
    anchors, positives, negatives : int64 arrays of one length

    Notes
    -----
    pytorch-metric-learning's ``DistanceWeightedMiner(cutoff, nonzero_loss_cutoff)`` (on ``LpDistance()``, which
    normalises the embeddings) computes the same weights but differs in four ways: (1) it subtracts one maximum
    over the whole matrix, not per anchor, so at large k the rows of anchors whose negatives are all far
    underflow to zero and those anchors are dropped, or the whole matrix does and the normalisation divides 0 by 0
    (its issues #230, #276); (2) such an anchor is dropped, where this falls back to uniform; (3) per anchor it
    draws as many positives as the anchor's class has members, at random with replacement, where this takes each
    positive pair once; (4) it draws with torch's generator. The distribution of a negative given its anchor is
    the same wherever its weights are finite and not all zero (tests/test_margin.py pins this and each difference).

    References
    ----------
    C.-Y. Wu, R. Manmatha, A. J. Smola, P. Krähenbühl. Sampling Matters in Deep Embedding Learning. ICCV 2017.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss.mining import distance_weighted_negatives
    >>> x = np.array([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
    >>> a, p, n = distance_weighted_negatives(x, np.array([0, 0, 1, 1]), rng=0)
    >>> a, p  # one triplet per positive pair
    (array([0, 1, 2, 3]), array([1, 0, 3, 2]))
    >>> n[1:3]  # d_12 = √0.8 < 1.4 is the only negative inside τ for anchors 1 and 2 (d_13 ≈ 1.9, d_20 = √2)
    array([2, 1])
    >>> n[[0, 3]]  # anchors 0 and 3 have none inside τ (d_02 = √2, d_03 = 2): uniform over their negatives
    array([3, 0])
    """
    cutoff = check_scalar(cutoff, "cutoff", low=0.0, low_inclusive=False)
    nonzero_loss_cutoff = check_scalar(nonzero_loss_cutoff, "nonzero_loss_cutoff", low=0.0, low_inclusive=False)
    rng = check_rng(rng, "rng")
    batch = _batch_in_blocks(embeddings, labels, "euclidean", ref_embeddings, ref_labels, backend)
    mined = []
    for block in batch.blocks():
        probabilities = _distance_weights(block, cutoff, nonzero_loss_cutoff)
        same, other = candidate_masks(block)
        for a in np.flatnonzero(same.any(axis=1) & other.any(axis=1)):  # a row of the block: anchor block.start + a
            positives = np.flatnonzero(same[a])
            cumulative = np.cumsum(probabilities[a])
            # The first index whose cumulative sum exceeds u·total, u in [0, 1), has a weight > 0; where u·total
            # rounds up to the total, the search runs past the end: the last index with a weight is meant.
            picks = np.searchsorted(cumulative, rng.random(positives.size) * cumulative[-1], side="right")
            last = np.flatnonzero(probabilities[a])[-1]
            mined.append((np.full(positives.size, block.start + a), positives, np.minimum(picks, last)))
    return _concatenated(mined, 3)


def _distance_weights(batch, cutoff, nonzero_loss_cutoff):
    """Per anchor, the sampling weights of its negatives (B×R float64; 0 off the negatives), each row's largest 1,
    or uniform over the anchor's negatives where none has a finite weight below the non-zero-loss cutoff."""
    _, negatives = candidate_masks(batch)
    k = batch.x.shape[1]
    d = np.maximum(batch.d.astype(np.float64), cutoff)
    with np.errstate(divide="ignore", invalid="ignore"):  # d >= 2: log of a non-positive number, excluded below
        log_w = (2.0 - k) * np.log(d) - ((k - 3.0) / 2.0) * np.log1p(-0.25 * d * d)
    allowed = negatives & (d < nonzero_loss_cutoff) & np.isfinite(log_w)
    log_w = np.where(allowed, log_w, -np.inf)
    top = log_w.max(axis=1, keepdims=True)
    has_weight = allowed.any(axis=1)
    weights = np.where(allowed, np.exp(log_w - np.where(has_weight[:, None], top, 0.0)), 0.0)
    # Fallback: no negative with a finite weight inside the cutoff → uniform over the anchor's negatives.
    return np.where(has_weight[:, None], weights, negatives.astype(np.float64))
