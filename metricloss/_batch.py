"""A loss on a labelled batch: the part every batch loss shares, written once.

:func:`labelled_batch` checks the embeddings, labels and optional reference set (query-vs-reference batches), puts
them in one float dtype, computes the distance (or similarity) matrix with its pullback and the kernels' view of
the classes, and returns a :class:`LabelledBatch`. A loss then does only its own math on ``batch.d`` (or
``batch.s``), produces the cotangent g = ∂L/∂D, and hands it back through one of the batch's pullbacks, which
return gradients shaped and typed like the inputs:

* :meth:`LabelledBatch.pull` for a dense B×R cotangent (which it overwrites: a kernel can write g over d);
* :meth:`LabelledBatch.pull_pairs` for a cotangent given on a list of entries (a, j) of the matrix: pulled back
  pair by pair in O(K·F) when the pairs are few, gathered into a dense matrix for the GEMM when they are many;
* :meth:`LabelledBatch.pull_triplets` for index triplets (a, p, n) and their slopes;
* :meth:`LabelledBatch.zeros` where nothing in the batch is valid.

Classes come as the :class:`metricloss._kernels.Classes` that :func:`class_index` builds (the kernels' shared
convention). Within one batch an anchor is not its own candidate (``self_offset`` 0); with a reference set every
reference is (``self_offset`` ``NO_SELF``). :func:`candidate_masks` gives each anchor's positives and negatives as
boolean rows, for a batch or a block of rows (the miners and the losses on masks share it).

**Blocks of anchor rows.** A loss on distances that is a sum over anchor rows asks for its batch with
``in_blocks=True`` and reads it through :meth:`LabelledBatch.blocks`. Where the B×R matrix fits the working memory
(:func:`metricloss.set_config`) the batch is its own one block, its matrix computed at once, as without blocks.
Otherwise the batch holds no matrix, and ``blocks()`` yields, one at a time, a :class:`LabelledBatch` of each block
of anchors against every candidate (a query-vs-reference batch whose ``start`` is its first anchor's row and whose
``self_offset`` is ``start`` within one batch): the loss does its per-row math on the block, pulls its cotangent back
(gradients for the block's rows and for the candidates), and :class:`GradientSum` adds the blocks' gradients up.
Pairs and triplets given as indices are pulled back pair by pair (no matrix needed).

**Kernels that write the cotangent over d.** Where the kernel, or the form of the cotangent it writes, depends on the
batch (within one batch or against references, a symmetric distance, the Euclidean distance's fused division), the
batch picks it and says how it wrote the cotangent (``written``, the options of :meth:`GradientSum.pull`):
:meth:`LabelledBatch.batch_all` (batch-all triplets, hinged or soft) and :meth:`LabelledBatch.contrastive_pairs`.

A loss that also runs on GPU arrays asks for it (``labelled_batch(..., gpu_arrays=True)``) and reads the batch only
through the kernels and these methods, plus :meth:`LabelledBatch.entries` / :meth:`LabelledBatch.row` for the few
distances it reads on the host: given GPU embeddings, the same batch then holds arrays of the input's library on
the device (its GEMMs that library's, through the array API; its kernels the CUDA ones on views of the arrays:
:class:`metricloss._kernels._gpu.Device`), and its matrix, cotangents and gradients stay there.
"""

import functools
from dataclasses import dataclass

import numpy as np

from ._arrays import is_gpu_array, namespace, numpy_dtype
from ._config import get_config
from ._kernels import NO_SELF, Classes, get_kernels
from ._kernels._gpu import on_device
from ._pairwise import (
    distance_matrix_vjp,
    dot_products_pullback,
    paired_distances_vjp,
    paired_similarities_vjp,
    pairs_vjp,
    pull_entries,
    refuse_on_gpu_unless_supported,
    similarity_matrix_vjp,
)
from ._validation import (
    check_embeddings,
    check_given_together,
    check_index_vector,
    check_labels,
    check_option,
    check_references,
    promote,
)
from .distances import DISTANCES, SIMILARITIES

_INT64_MAX = np.iinfo(np.int64).max
_NOT_GIVEN = object()  # labelled_batch's distance or similarity, whichever the loss does not take


def _fits_int64(labels):
    return labels.dtype.kind == "i" or labels.dtype.itemsize < 8 or labels.size == 0 or labels.max() <= _INT64_MAX


def comparable_labels(*arrays):
    """Integer label arrays (any signed or unsigned width, mixed) as int64 arrays that compare, and order, exactly
    as the labels' values do across all of them: labels are identities, never cast with wrap-around or through
    float64. The values themselves when every array fits int64 (the common case: no copy for int64), else the
    ranks of the values in their union (uint64 labels above 2⁶³ - 1, possibly against negative ones)."""
    if all(_fits_int64(a) for a in arrays):
        return tuple(a.astype(np.int64, copy=False) for a in arrays)
    if all(a.dtype.kind == "u" or a.size == 0 or a.min() >= 0 for a in arrays):
        union = np.concatenate([a.astype(np.uint64) for a in arrays])  # every value in [0, 2⁶⁴): exact in uint64
    else:  # uint64 values above 2⁶³ - 1 and negative values: no integer dtype holds both; Python ints do
        union = np.concatenate([a.astype(object) for a in arrays])
    ranks = np.unique(union, return_inverse=True)[1].reshape(-1).astype(np.int64)
    return tuple(np.split(ranks, np.cumsum([a.size for a in arrays])[:-1]))


def class_index(labels, ref_labels):
    """The kernels' view of the classes of anchors ``labels`` against references ``ref_labels``: a
    :class:`metricloss._kernels.Classes`, its classes numbered by the references' labels in increasing order. The
    labels may have any integer dtypes, mixed: they are compared exactly (:func:`comparable_labels`).
    """
    labels, ref_labels = comparable_labels(np.asarray(labels), np.asarray(ref_labels))
    classes, ref_class = np.unique(ref_labels, return_inverse=True)
    class_order = np.argsort(ref_class, kind="stable")
    class_starts = np.searchsorted(ref_class[class_order], np.arange(classes.size + 1))
    at = np.minimum(np.searchsorted(classes, labels), classes.size - 1)
    anchor_class = np.where(classes[at] == labels, at, -1)
    return Classes(ref_class.astype(np.int32), anchor_class.astype(np.int32), class_order, class_starts)


def _batch_classes(labels, ref_labels):
    """(labels, ref_labels, classes, self_offset) of checked labels: comparable (:func:`comparable_labels`), with
    the kernels' classes (:func:`class_index`); within one batch (``ref_labels`` None) the references are the
    batch itself and an anchor is not its own candidate (``self_offset`` 0)."""
    if ref_labels is None:
        (labels,) = comparable_labels(labels)
        return labels, labels, class_index(labels, labels), 0
    labels, ref_labels = comparable_labels(labels, ref_labels)
    return labels, ref_labels, class_index(labels, ref_labels), NO_SELF


@dataclass
class LabelledBatch:
    """A checked labelled batch, its pairwise matrix and its pullbacks (see the module docstring).

    ``x`` and ``ref`` (None within one batch) are the embeddings in their common float dtype; ``d`` is the B×R
    distance matrix (``s`` the similarity matrix, for a batch built with ``similarity=``; the other is None).
    """

    x: np.ndarray
    ref: np.ndarray | None
    labels: np.ndarray
    ref_labels: np.ndarray
    d: np.ndarray | None
    s: np.ndarray | None
    classes: Classes
    self_offset: int
    kernels: object
    _pullback: object
    _paired_vjp: object
    _dtypes: tuple
    # (x, sq_norm, ratio, root) while ``d`` still holds the Gram matrix, for a kernel to turn into distances row
    # by row as it reads it (a batch built with ``defer_distances=True``); None once d holds the distances.
    gram: tuple | None = None
    # A block of anchor rows: the row of the batch where it starts. A batch too large for one block has no matrix
    # (d and s None) and instead ``block_matrix``: (rows, out) ↦ (D(rows, candidates) or S(rows, candidates), its
    # pullback), the matrix computed in ``out`` (None: a new array).
    start: int = 0
    block_matrix: object = None
    block_matrices: int = 1  # how many arrays of a block's matrix's size the loss holds at once (:func:`block_rows`)
    distance: str | None = None  # the distance's name (None for a batch on similarities)
    # The gradients as arrays of the input's kind, from the engine's (None: the engine's are: NumPy's on the host);
    # a GPU batch's :meth:`metricloss._kernels._gpu.Device.output`.
    output: object = None

    @property
    def dtype(self):
        """The NumPy dtype the batch computes in (its embeddings', promoted with the references')."""
        return numpy_dtype(self.x)

    @property
    def fused_division(self):
        """Whether a kernel writing the cotangent over d writes g/d instead: the Euclidean pullback's scale, so that
        the pullback need not read d (``pull(..., divided=True)``). No pullback reads d otherwise: a kernel may
        always write its cotangent over ``d`` once it has read it."""
        return self.distance == "euclidean"

    @property
    def symmetric(self):
        """Within one batch on a symmetric distance (not ``"snr"``): D = Dᵀ, so a kernel may write the cotangent
        folded, g + gᵀ, which the pullback then takes as it is (``pull(..., symmetric=True)``)."""
        return self.ref is None and self.distance != "snr"

    @property
    def in_blocks(self):
        """Whether the batch runs in blocks of rows (its matrix did not fit the working memory)."""
        return self.block_matrix is not None

    def blocks(self):
        """The batch's anchors in blocks of rows, each a batch of its own (see the module docstring): the batch
        itself where it is one block; else each block's matrix is computed when the block is reached, in the
        memory of the block before it (the last, shorter block in its first rows), so that a loss never holds
        two: a block's matrix, and what is written over it, is gone once the loss moves to the next block."""
        if not self.in_blocks:
            yield self
            return
        within = self.ref is None
        candidates = self.x if within else self.ref
        n_rows = self.x.shape[0]
        step = block_rows(n_rows, candidates.shape[0], self.x.dtype.itemsize, self.block_matrices)
        matrix = None
        for start in range(0, n_rows, step):
            rows = slice(start, min(start + step, n_rows))
            matrix, pullback = self.block_matrix(self.x[rows], None if matrix is None else matrix[: rows.stop - start])
            on_distances = self.distance is not None
            yield LabelledBatch(
                self.x[rows],
                candidates,
                self.labels[rows],
                self.ref_labels,
                matrix if on_distances else None,
                None if on_distances else matrix,
                self.classes._replace(anchor_class=self.classes.anchor_class[rows]),
                start if within else NO_SELF,
                self.kernels,
                pullback,
                self._paired_vjp,
                (self.x.dtype, self.x.dtype),
                start=start,
                distance=self.distance,
            )

    def entries(self, rows, cols):
        """The distance matrix's entries (rows[k], cols[k]) as a float64 host array (only they leave a GPU)."""
        return self.kernels.gather_entries(self.d, rows, cols)

    def row(self, a):
        """Row a of the distance matrix as a float64 host array."""
        n_cols = self.d.shape[1]
        return self.entries(np.full(n_cols, a), np.arange(n_cols))

    def finish(self, grads):
        """Gradients in the inputs' dtypes and kinds: one array, or (grad_embeddings, grad_ref_embeddings)."""
        xp, output = namespace(self.x), self.output or (lambda grad: grad)
        if self.ref is None:
            return output(xp.astype(grads, self._dtypes[0], copy=False))
        return tuple(output(xp.astype(g, dtype, copy=False)) for g, dtype in zip(grads, self._dtypes, strict=True))

    def candidate_counts(self):
        """Per anchor, its numbers of positives P_a and negatives N_a among the references (an anchor is not its
        own positive within one batch; an anchor whose class no reference has has P_a = 0 and every reference as
        a negative)."""
        ref_class, anchor_class, _, class_starts = self.classes
        has_class = anchor_class >= 0
        class_size = np.where(has_class, np.diff(class_starts)[np.maximum(anchor_class, 0)], 0)
        n_positives = class_size - has_class if self.self_offset != NO_SELF else class_size
        return n_positives, ref_class.size - class_size

    def positive_entries(self):
        """The entries (rows[k], cols[k]) of every anchor's positives, in row-major order (``np.nonzero`` of the
        positive mask's order), from the class lists: O(number of positives), no B×R pass."""
        _, anchor_class, class_order, class_starts = self.classes
        n_positives, _ = self.candidate_counts()
        with_self = n_positives + (anchor_class >= 0) if self.self_offset != NO_SELF else n_positives
        rows = np.repeat(np.arange(anchor_class.size), with_self)  # every anchor against its whole class
        within = np.arange(rows.size) - np.repeat(np.cumsum(with_self) - with_self, with_self)
        cols = class_order[class_starts[anchor_class[rows]] + within]
        if self.self_offset != NO_SELF:  # not the anchor itself
            other = cols != rows + self.self_offset
            rows, cols = rows[other], cols[other]
        return rows, cols

    def zeros(self):
        """The gradients of a batch where nothing is valid."""
        xp = namespace(self.x)
        if self.ref is None:
            return self.finish(xp.zeros_like(self.x))
        return self.finish((xp.zeros_like(self.x), xp.zeros_like(self.ref)))

    def pull(self, g, weight=1.0, divided=False, symmetric=False):
        """The gradients for the dense cotangent ``weight · g`` on the matrix. Overwrites g, which may be ``d``
        itself once the loss is done reading it. ``divided``: g already holds g/d (Euclidean distances; a
        kernel fused the division). ``symmetric``: within one batch, g already holds S + Sᵀ, the cotangent with
        both ends of each pair folded in (a kernel wrote it so), and the pullback skips that pass."""
        if self.s is not None:
            return self.finish(self._pullback(g, weight))
        return self.finish(self._pullback(g, weight, divided=divided, symmetric=symmetric))

    def pull_pairs(self, rows, cols, g):
        """The gradients for a cotangent that is g[k] on entry (rows[k], cols[k]) of the matrix (repeated entries
        add up) and 0 elsewhere: pair by pair in O(K·F) while K·F <= B·R (always, for a batch in blocks, which has no
        matrix), else through a dense cotangent."""
        g = np.asarray(g, dtype=self.dtype)
        grads = pull_entries(self.x, self.ref, rows, cols, g, self._paired_vjp, self._pullback, self.kernels)
        return self.finish(grads)

    def given_triplets(self, triplets):
        """``triplets`` checked as the batch's triplets (a, p, n): three 1-D integer arrays of one length, a
        indexing the embeddings, p and n the references (the batch itself without them), p of a's class and not
        a, n of another class; returned as int64 arrays. TypeError or ValueError naming ``triplets`` otherwise."""
        if not isinstance(triplets, tuple | list) or len(triplets) != 3:
            raise TypeError(f"triplets must be a tuple of three index arrays (a, p, n); got {type(triplets).__name__}")
        a, p, n = (check_index_vector(t, f"triplets' {name}") for name, t in zip("apn", triplets, strict=True))
        if not a.size == p.size == n.size:
            raise ValueError(f"triplets must hold arrays of one length; got {[a.size, p.size, n.size]}")
        n_rows, n_refs = self.x.shape[0], self.ref_labels.shape[0]
        for name, t, size in (("a", a, n_rows), ("p", p, n_refs), ("n", n, n_refs)):
            if t.size and (t.min() < 0 or t.max() >= size):
                raise ValueError(f"triplets' {name} must index [0, {size}); got values in [{t.min()}, {t.max()}]")
        ref_class, anchor_class, _, _ = self.classes
        bad = (anchor_class[a] != ref_class[p]) | (anchor_class[a] < 0) | (anchor_class[a] == ref_class[n])
        if self.self_offset == 0:
            bad |= a == p
        if bad.any():
            k = int(np.argmax(bad))
            raise ValueError(
                f"triplets must have p of a's class (p != a) and n of another class; got triplet {k}: "
                f"({a[k]}, {p[k]}, {n[k]})"
            )
        return a, p, n

    def pull_triplets(self, anchors, positives, negatives, slopes, weight):
        """The gradients for triplet terms ℓ(d_ap − d_an) with slopes s = ∂ℓ/∂d_ap = −∂ℓ/∂d_an, reduced with the
        weight w: +w·s on d[a, p] and −w·s on d[a, n]. A positive index of -1 stands for d⁺ = 0 (a kept
        batch-hard anchor without positive): no gradient there."""
        has_positive = positives >= 0
        rows = np.concatenate([anchors[has_positive], anchors])
        cols = np.concatenate([positives[has_positive], negatives])
        return self.pull_pairs(rows, cols, weight * np.concatenate([slopes[has_positive], -slopes]))

    def batch_all(self, margin, semihard_only=False, soft=False):
        """Batch-all on the batch (or block): per anchor, the sum of its valid triplets' terms [d_ap − d_an + m]₊
        (``semihard_only``: the semi-hard ones only; ``soft``: softplus(d_ap − d_an + m)), its numbers of terms > 0
        and of valid triplets, and the cotangent of the sum written over ``d``. Returns (sums, n_nonzero, n_valid,
        written), ``written`` the options that :meth:`GradientSum.pull` (or :meth:`pull`) takes that cotangent with.

        The engine picks the kernel by the batch: within one batch on a symmetric distance (:attr:`symmetric`) the
        hinge's kernel reads the upper triangle of D and writes the folded cotangent g + gᵀ; otherwise the kernel of
        any rows against any candidates. Either writes g/d for the Euclidean distance (:attr:`fused_division`). A
        soft term at most half the smallest subnormal of the input dtype rounds to 0 there, and counts as 0."""
        d, classes, divide = self.d, self.classes, self.fused_division
        if soft:
            smallest = float(np.finfo(self.dtype).smallest_subnormal) / 2
            counts = self.kernels.soft_all_triplets(d, classes, self.self_offset, margin, smallest, d, divide)
            return (*counts, {"divided": divide, "symmetric": False})
        if self.symmetric:
            counts = self.kernels.batch_all_symmetric(d, classes, margin, semihard_only, d, divide, gram=self.gram)
        else:
            counts = self.kernels.batch_all_triplets(d, classes, self.self_offset, margin, semihard_only, d, divide)
        return (*counts, {"divided": divide, "symmetric": self.symmetric})

    def contrastive_pairs(self, margin, pos_margin, form):
        """The contrastive kernel on the batch (or block): per anchor, in columns (similar, dissimilar), the sums of
        its pairs' terms, the numbers of terms > 0 and of pairs, and the cotangent of the sum written over ``d``
        (g/d for the Euclidean distance: :attr:`fused_division`). Returns those three and ``written``, the options
        that :meth:`GradientSum.pull` takes that cotangent with: within one batch on a symmetric distance every
        unordered pair appears twice, as (i, j) and (j, i), and g_ij depends on d_ij and on whether i and j share
        a class only, so g is itself the folded cotangent S + Sᵀ of the pairs i < j, of which a block of the
        batch's rows (whose candidates are the batch: its ``self_offset`` is its start) holds its rows' share."""
        d, divide = self.d, self.fused_division
        counts = self.kernels.contrastive_pairs(d, self.classes, self.self_offset, margin, pos_margin, form, d, divide)
        folded = self.self_offset != NO_SELF and self.distance != "snr"  # within one batch, symmetric distance
        return (*counts, {"divided": divide, "symmetric": folded})


def candidate_masks(batch, rows=slice(None)):
    """Boolean masks of the positives and negatives of the batch's anchors ``rows`` (a slice; every anchor by
    default), a row per anchor over the references (not the anchor itself, within one batch; a block of rows
    excludes each anchor's own column through its ``self_offset``): O(rows · R)."""
    ref_class, anchor_class, _, _ = batch.classes
    anchors = np.arange(anchor_class.size)[rows]
    same = (anchor_class[anchors, None] == ref_class[None, :]) & (anchor_class[anchors, None] >= 0)
    other = ~same
    if batch.self_offset != NO_SELF:  # anchor a's own column, a + self_offset
        own = (np.arange(anchors.size), anchors + batch.self_offset)
        same[own] = False
        other[own] = False
    return same, other


def block_rows(n_rows, n_cols, itemsize, matrices=1):
    """How many anchor rows a block holds: as many as the working memory has room for, the loss holding
    ``matrices`` arrays of the block's matrix's size at once (its matrix, over which the cotangent is written, and
    its per-row math's temporaries; each block's matrix is computed in the one before it), at least 1 and at most
    ``n_rows``: a batch whose ``matrices`` B×R arrays fit is one block."""
    budget = get_config()["working_memory"] * 2**20
    return max(1, min(n_rows, int(budget // (matrices * n_cols * itemsize))))


class GradientSum:
    """The gradients of a batch, block by block (:meth:`LabelledBatch.blocks`): a block of rows is pulled back at
    once, its pullback giving its rows' gradients and, its candidates being every row of the batch (or the
    reference set), theirs too, added up here; :meth:`result` applies the reduction's weight once, at the end (a
    gradient is linear in its cotangent). A batch that is one block is pulled back in :meth:`result`, with the
    weight, exactly as without blocks (on GPU arrays too)."""

    def __init__(self, batch):
        self.batch = batch
        self.whole = None  # (g, pull options, same_class_apart) of a batch that is one block, pulled back at the end
        self.whole_pairs = None  # or (rows, cols, g): its cotangent given on entries
        self.same_class = []  # the same-class entries (rows, cols, values) a block of rows kept apart
        self.divided = False
        if batch.in_blocks:
            self.grad_x = np.zeros_like(batch.x)
            self.grad_candidates = self.grad_x if batch.ref is None else np.zeros_like(batch.ref)

    def pull(self, block, g, *, divided=False, symmetric=False, same_class_apart=False):
        """Pull the block's cotangent g back (overwriting g). ``divided`` and ``symmetric`` as in
        :meth:`LabelledBatch.pull` (g holds g/d; g holds S + Sᵀ, of which a block of rows, whose pullback adds
        the transpose's share itself, takes half). ``same_class_apart``: the entries of same-class pairs are
        weighted apart, by :meth:`result`'s ``same_class_weight`` (a loss that reduces its two kinds of pairs
        separately); a block of rows keeps them, O(block · K), and pulls them back pair by pair at the end."""
        if block is self.batch:
            self.whole = (g, {"divided": divided, "symmetric": symmetric}, same_class_apart)
            return
        half = 0.5 if symmetric else 1.0
        self.divided = divided
        if same_class_apart:
            rows, cols = block.positive_entries()
            self.same_class.append((rows + block.start, cols, half * g[rows, cols]))
            g[rows, cols] = 0
        self._add(block, block.pull(g, half, divided=divided))

    def pull_pairs(self, block, rows, cols, g):
        """Pull back the block's cotangent given as g[k] on entry (rows[k], cols[k]) of its matrix (rows numbered
        within the block), as :meth:`LabelledBatch.pull_pairs` does: pair by pair where the pairs are few, else
        through the block's dense pullback."""
        if block is self.batch:
            self.whole_pairs = (rows, cols, g)
            return
        self._add(block, block.pull_pairs(rows, cols, g))

    def _add(self, block, grads):
        """Add a block's gradients (for its rows, for the candidates) to the batch's."""
        grad_rows, grad_candidates = grads
        self.grad_x[block.start : block.start + block.x.shape[0]] += grad_rows
        self.grad_candidates += grad_candidates

    def result(self, weight, same_class_weight=None):
        """The batch's gradients for the cotangent times ``weight`` (its same-class entries, where kept apart,
        times ``same_class_weight``), in the inputs' dtypes."""
        if same_class_weight is None:
            same_class_weight = weight
        if not self.batch.in_blocks and self.whole_pairs is not None:
            rows, cols, g = self.whole_pairs
            return self.batch.pull_pairs(rows, cols, weight * g)
        if not self.batch.in_blocks:
            g, options, apart = self.whole
            if apart and same_class_weight != weight:
                # One scalar weight for the pullback, the same-class entries (O(B·K)) rescaled; a zero weight
                # means no term > 0 among the other entries, whose slopes are then all 0 already.
                if weight:
                    self.batch.kernels.scale_same_class(g, self.batch.classes, same_class_weight / weight)
                else:
                    weight = same_class_weight
            return self.batch.pull(g, weight, **options)
        self.grad_x *= weight
        if self.batch.ref is not None:
            self.grad_candidates *= weight
        if self.same_class:
            self._pull_same_class(same_class_weight)
        grads = self.grad_x if self.batch.ref is None else (self.grad_x, self.grad_candidates)
        return self.batch.finish(grads)

    def _pull_same_class(self, weight):
        """Add the kept same-class entries' gradients, times ``weight``, pair by pair."""
        batch = self.batch
        rows, cols, values = (np.concatenate(column) for column in zip(*self.same_class, strict=True))
        values *= weight
        candidates = batch.x if batch.ref is None else batch.ref
        if self.divided:
            # values hold S = g/d, the Euclidean rule's scale: Σ S (x_i − y_j), which is the squared distance's
            # rule, 2g (x_i − y_j), at g = S/2 (exact: a halving)
            values *= 0.5
            batch.kernels.pull_distance_pairs(
                batch.x, candidates, rows, cols, values, True, self.grad_x, self.grad_candidates
            )
            return
        grads = pairs_vjp(batch.x, batch.ref, rows, cols, values, batch._paired_vjp, batch.kernels)
        if batch.ref is None:
            self.grad_x += grads
        else:
            self.grad_x += grads[0]
            self.grad_candidates += grads[1]


def _gpu_labelled_batch(embeddings, labels, distance, ref_embeddings, ref_labels, backend, ref_name, defer, distances):
    """:func:`labelled_batch` for GPU embeddings: the same batch, its arrays the input library's on the device
    (:class:`metricloss._kernels._gpu.Device`), its kernels the CUDA ones on views of them, its gradients returned as
    arrays of the input's kind. With a Euclidean distance, within one batch or against GPU references, as one block;
    anything else is refused by name, never run on the CPU."""
    check_option(distance, "distance", distances)
    refuse_on_gpu_unless_supported(distance)
    device = on_device(embeddings, backend)
    x = device.rows(embeddings)

    def host_labels(value, n_samples, name, against):
        return check_labels(device.to_host(value) if is_gpu_array(value) else value, n_samples, name, against=against)

    labels = host_labels(labels, x.shape[0], "labels", "embeddings")
    check_given_together(ref_embeddings, ref_labels)
    ref = None
    if ref_embeddings is not None:
        ref = device.references(x, ref_embeddings, ref_name)
        ref_labels = host_labels(ref_labels, ref.shape[0], "ref_labels", ref_name)
    labels, ref_labels, classes, self_offset = _batch_classes(labels, ref_labels)
    names = ("embeddings", ref_name)
    if defer:
        d, pullback, gram = distance_matrix_vjp(x, ref, distance, device.kernels, names, defer=True)
    else:
        (d, pullback), gram = distance_matrix_vjp(x, ref, distance, device.kernels, names), None
    dtypes = (x.dtype,) if ref is None else (x.dtype, ref.dtype)
    return LabelledBatch(
        x,
        ref,
        labels,
        ref_labels,
        d,
        None,
        classes,
        self_offset,
        device.kernels,
        pullback,
        distance,
        dtypes,
        gram,
        distance=distance,
        output=device.output,
    )


def labelled_batch(
    embeddings,
    labels,
    *,
    distance=_NOT_GIVEN,
    similarity=_NOT_GIVEN,
    ref_embeddings=None,
    ref_labels=None,
    backend=None,
    name="embeddings",
    ref_name="ref_embeddings",
    defer_distances=False,
    distances=DISTANCES,
    gpu_arrays=False,
    in_blocks=False,
    block_matrices=1,
    matrix=True,
):
    """Check a labelled batch (and its reference set, if any) and build its :class:`LabelledBatch` with the
    pairwise ``distance`` (one of ``distances``, by default ``DISTANCES``: a loss built on symmetric distances >= 0
    passes ``SYMMETRIC_DISTANCES``, which the error then lists) or, for losses on similarities, ``similarity`` (one
    of ``SIMILARITIES``): exactly one of the two is given, and an invalid value is refused under the name given (a
    loss on similarities passing ``similarity=None`` hears about ``similarity``). ``name`` and ``ref_name`` are
    what the caller calls its embeddings and its references, for the errors that name an argument (a loss whose
    references are class centres: ``"centers"``; a ranking loss's ``"anchors"`` and ``"positives"``).
    ``defer_distances``: within one batch, the Euclidean distances may be left as the Gram matrix with the
    arguments of their conversion in ``gram``, for a kernel that converts each row while it has it in cache.
    ``gpu_arrays``: the loss takes GPU embeddings in place (the batch's arrays then live on the GPU); other losses
    refuse them by name (:func:`metricloss._validation.check_embeddings`). ``in_blocks``: the loss reads the batch
    through :meth:`LabelledBatch.blocks`, so that a batch whose distance matrix does not fit the working memory runs in
    blocks of anchor rows (GPU batches run as one block); ``block_matrices``: how many arrays of a block's matrix's
    size the loss holds at once, its matrix included (its peak as one block, in matrices, to the nearest whole
    number: ``benchmarks/blocks_memory.py``), among which the working memory is shared. ``matrix=False``
    (``similarity="dot"`` against references only): the loss computes the few entries it reads itself and pulls its
    cotangent back pair by pair (:meth:`LabelledBatch.pull_pairs`, :meth:`GradientSum.pull_pairs`), so neither the
    batch nor its blocks compute the matrix (``s`` None): the dot product's dense pullback, G ↦ (G Y, Gᵀ X), does
    not read it."""
    if gpu_arrays and is_gpu_array(embeddings):
        return _gpu_labelled_batch(
            embeddings, labels, distance, ref_embeddings, ref_labels, backend, ref_name, defer_distances, distances
        )
    x = check_embeddings(embeddings, name)
    labels = check_labels(labels, x.shape[0])
    ref, ref_labels = check_references(x, ref_embeddings, ref_labels)
    labels, ref_labels, classes, self_offset = _batch_classes(labels, ref_labels)
    kernels = get_kernels(backend)
    dtypes = (x.dtype,) if ref is None else (x.dtype, ref.dtype)
    if ref is not None:
        x, ref = promote(x, ref)
    names = (name, name if ref is None else ref_name)
    candidates = x if ref is None else ref
    blocked = in_blocks and block_rows(x.shape[0], candidates.shape[0], x.dtype.itemsize, block_matrices) < x.shape[0]
    block_matrix = None  # rows ↦ their block of the matrix and its pullback, for a batch that runs in blocks
    d = s = gram = None
    on_distances = similarity is _NOT_GIVEN
    if on_distances:
        check_option(distance, "distance", distances)
        euclidean = distance in ("euclidean", "sqeuclidean")  # pulled back pair by pair by a kernel, given the name
        paired = distance if euclidean else lambda a, b: paired_distances_vjp(a, b, distance, names)
        if blocked:  # no matrix: each block of rows computes its own

            def block_matrix(rows, out):
                return distance_matrix_vjp(rows, candidates, distance, kernels, names, out=out)

            pullback = None
        elif defer_distances:
            d, pullback, gram = distance_matrix_vjp(x, ref, distance, kernels, names, defer=True)
        else:
            d, pullback = distance_matrix_vjp(x, ref, distance, kernels, names)
    else:
        check_option(similarity, "similarity", SIMILARITIES)
        paired = functools.partial(paired_similarities_vjp, similarity=similarity)
        if not matrix and blocked:  # no matrix: each block of rows has only the pullback

            def block_matrix(rows, out):
                return None, dot_products_pullback(rows, candidates, kernels)

            pullback = None
        elif not matrix:
            pullback = dot_products_pullback(x, candidates, kernels)
        elif blocked:

            def block_matrix(rows, out):
                return similarity_matrix_vjp(rows, candidates, similarity, kernels, names, out)

            pullback = None
        else:
            s, pullback = similarity_matrix_vjp(x, ref, similarity, kernels, names)
    return LabelledBatch(
        x,
        ref,
        labels,
        ref_labels,
        d,
        s,
        classes,
        self_offset,
        kernels,
        pullback,
        paired,
        dtypes,
        gram,
        block_matrix=block_matrix,
        block_matrices=block_matrices,
        distance=distance if on_distances else None,
    )
