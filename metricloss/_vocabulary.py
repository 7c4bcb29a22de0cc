"""One vocabulary for the whole family: what each parameter name of a loss means (one meaning wherever it
appears), the defaults that differ from one loss to another and why, and the names users bring from other
libraries, each with the name metricloss uses.

``docs/guide/vocabulary.md`` is written from these tables (``python docs/write_vocabulary.py``) and
``tests/test_vocabulary.py`` holds every public signature to them: a new loss that uses a word in a new sense, or
a default that differs without a reason, fails there.
"""

import difflib
import inspect

# The arrays a loss takes, positional (ref_embeddings and ref_labels alone by keyword): name, its one meaning.
ARRAYS = {
    "embeddings": "the batch's rows f_i, (B, F): a labelled batch is `(embeddings, labels)`",
    "labels": "the class of each row of `embeddings`, integers (B,); every pair of a batch is positive (same class) "
    "or negative",
    "anchors": "explicit rows: row i of `anchors`, `positives` (and `negatives`) is tuple i (torch: `anchor`)",
    "positives": "explicit rows: the positive of each anchor, same shape as `anchors` (torch: `positive`)",
    "negatives": "explicit rows: the negative(s) of each anchor (torch: `negative`)",
    "negatives2": "explicit rows: the quadruplet's second negative, of another class than `negatives`",
    "x1": "torch's pair form `(x1, x2, y)`: the first rows (or scores) of each pair",
    "x2": "torch's pair form `(x1, x2, y)`: the second rows (or scores) of each pair",
    "y": "torch's pair form: the target of each pair, 1 (similar / ranked higher) or −1 (or 0, as torch takes it)",
    "x": "`hinge_embedding_loss`'s distances (torch's `input`)",
    "queries": "WARP: the query rows, (Q, F)",
    "items": "WARP: the item rows, (N, F)",
    "scores": "WARP: the score matrix s_qj of queries against items, (Q, N)",
    "relevance": "WARP: which items are relevant to each query, 0/1 (Q, N)",
    "triplets": "mined triplets `(anchors, positives, negatives)` as three index arrays into the batch (a miner's "
    "output); given, they replace `mining`",
    "centers": "learnable class centres c_y, (C, F); given, their gradient is returned",
    "beta": "margin loss's learnable boundary β, a float or (1,) or (C,) array; given, its gradient is returned",
    "ref_embeddings": "the references a batch's rows are compared with instead of each other (query against "
    "reference: a memory bank, a gallery); given, its gradient is returned last",
    "ref_labels": "the class of each row of `ref_embeddings`",
}

# The hyper-parameters, keyword-only: name, its one meaning.
HYPERPARAMETERS = {
    # -- the choice of tuples, the distance, the reduction, the kernels
    "mining": "which tuples enter the loss: a string (`'all'`, `'hard'`, `'semihard'`, `'epsilon'`, …)",
    "distance": "the pairwise distance d: `'euclidean'`, `'sqeuclidean'`, `'cosine'` (1 − cos), `'snr'`",
    "similarity": "the pairwise similarity s: `'cosine'` or `'dot'`",
    "reduction": "how the terms become one value: `'mean'`, `'sum'`, `'mean_nonzero'` (over the non-zero terms), "
    "`'none'` where taken",
    "split_reduction": "reduce the loss's two kinds of terms (positive and negative pairs; the quadruplet's two "
    "hinges) each by its own count, then add",
    "incomplete_anchors": "what to do with an anchor that has no positive or no negative: `'drop'` it or `'keep'` "
    "its other terms",
    "backend": "the kernels: `'numpy'` (readable), `'numba'` (CPU, the default), `'cuda'`",
    "rng": "the random generator (a seed or `numpy.random.Generator`) of a sampling loss",
    # -- margins
    "margin": "the margin m, on the scale of the loss's own distance or similarity",
    "margin2": "the quadruplet's second, weaker margin α₂",
    "pos_margin": "the contrastive loss's positive margin: positive pairs closer than it cost nothing",
    "adaptive_margins": "the quadruplet paper's online hard negative mining: margins scaled by the batch's gap "
    "between mean negative and mean positive distances",
    # -- scales of similarities in exponents
    "temperature": "τ: the logits are similarities / τ",
    "scale": "s = 1/τ: the logits are s × similarities (sentence-transformers' scale; circle's γ)",
    "positive_scale": "multi-similarity's α: the scale of the positive pairs' similarities",
    "negative_scale": "multi-similarity's β: the scale of the negative pairs' similarities",
    "threshold": "multi-similarity's λ: the similarity around which pairs are weighted",
    "epsilon": "multi-similarity's ε: the margin of its pair mining (`mining='epsilon'`)",
    # -- each loss's own
    "form": "which published formula of the loss (its docstring lists them)",
    "soft": "the triplet loss's soft margin: softplus(d_ap − d_an) instead of the hinge",
    "halved": "triplet-center's D = ½ d, as the paper writes it",
    "nu": "margin loss's ν: the weight of the L1 penalty on β",
    "l2_reg": "N-pair's λ: the weight of the embeddings' squared norms",
    "detach_weights": "circle loss's weights α_p, α_n held constant in the gradient, as the paper does",
    "symmetric": "multiple-negatives ranking: add the positives-to-anchors loss",
    "p": "torch's triplet margin loss: the p of the p-norm distance",
    "eps": "torch's triplet margin loss: the ε added inside the p-norm",
    "swap": "torch's triplet margin loss: the distance swap (Balntas et al.)",
    "sampling": "WARP's order of drawing negatives: `'random'` (the paper's), `'index'` (increasing item index) or "
    "`'exact'` (no draws: the true rank)",
    "max_trials": "WARP's largest number of negatives sampled per positive",
    "weighting": "WARP's rank weighting L: `'harmonic'` (the paper's Σ 1/j) or `'log'` (LightFM's ln k)",
}

MEANINGS = {**ARRAYS, **HYPERPARAMETERS}

# A default that differs between losses, and why: the loss's paper (or the library it reproduces) sets it so.
DIFFERING_DEFAULTS = {
    "margin": {  # on each loss's own scale: the paper's value, or the library's the loss reproduces
        "triplet_loss": "None: 1.0 (FaceNet's triplet loss on Euclidean distances), or 0.0 with `soft=True` (Hermans "
        "et al.'s soft margin has none)",
        "circle_loss": "0.4: the paper's setting for fine-grained image retrieval (pytorch-metric-learning's); "
        "0.25 for face recognition",
        "margin_loss": "0.2: Wu et al.'s α",
        "triplet_center_loss": "5.0: on the paper's D = ½‖f − c‖², the value reimplementations of the paper use",
        "cosine_embedding_loss": "0.0: torch's `CosineEmbeddingLoss`",
        "margin_ranking_loss": "0.0: torch's `MarginRankingLoss`",
    },
    "scale": {
        "circle_loss": "80: the paper's γ for fine-grained image retrieval (pytorch-metric-learning's); 256 for "
        "face recognition",
        "multiple_negatives_ranking_loss": "20: sentence-transformers' scale (τ = 0.05)",
    },
    "temperature": {
        "ntxent_loss": "0.07: pytorch-metric-learning's `NTXentLoss` (SimCLR tunes τ with the batch size)",
        "supcon_loss": "0.1: the SupCon paper's and pytorch-metric-learning's `SupConLoss`",
    },
    "similarity": {
        "npair_loss": "'dot': Sohn's N-pair loss is on inner products (its L2 term keeps the norms bounded)",
        "npair_pairs_loss": "'dot': Sohn's N-pair loss is on inner products",
    },
    "distance": {
        "quadruplet_loss": "'sqeuclidean': Chen et al. write the quadruplet loss on squared distances",
        "quadruplet_margin_loss": "'sqeuclidean': Chen et al.'s squared distances",
        "triplet_center_loss": "'sqeuclidean': He et al.'s D = ½‖f − c‖²",
    },
    "reduction": {
        "triplet_loss": "None: per mining, each the convention of the library that defines it (the mining table of "
        "its docstring)",
        "circle_loss": "'mean_nonzero': pytorch-metric-learning's reducer for `CircleLoss`",
        "margin_loss": "'mean_nonzero': pytorch-metric-learning's reducer for `MarginLoss`",
        "triplet_center_loss": "'sum': He et al. sum over the batch",
        "warp_loss": "'sum': Weston et al. sum over the positives",
        "warp_embedding_loss": "'sum': Weston et al. sum over the positives",
    },
    "split_reduction": {
        "contrastive_loss": "False: Hadsell et al. average all pairs together",
        "contrastive_pair_loss": "False: Hadsell et al. average all pairs together",
        "quadruplet_loss": "True: Chen et al. average each of the two terms over its own tuples",
        "quadruplet_margin_loss": "True: Chen et al. average each of the two terms over its own tuples",
    },
    "form": {
        "circle_loss": "'per_anchor': the paper's equation per anchor, averaged (pytorch-metric-learning's)",
    },
}

# Names users bring from other libraries and papers: (guess, the parameter that means it here, what it is[, why]).
# The first guess whose parameter the function takes names it; a near-miss spelling gets "did you mean".
GUESSES = (
    ("m", "margin", "the margin m"),
    ("alpha", "positive_scale", "α", "pytorch-metric-learning's alpha"),
    ("beta", "negative_scale", "β", "pytorch-metric-learning's beta"),
    ("base", "threshold", "λ", "pytorch-metric-learning's base"),
    ("margin", "threshold", "λ, the similarity pairs are weighted around", "the margin of its pair mining is epsilon="),
    ("gamma", "scale", "γ", "pytorch-metric-learning's gamma"),
    ("tau", "temperature", "τ"),
    ("temp", "temperature", "τ"),
    ("scale", "temperature", "τ", "temperature = 1 / scale: scale=20 is temperature=0.05"),
    ("temperature", "scale", "the scale 1/τ", "temperature=0.05 is scale=20"),
    ("metric", "distance", "the distance", "scikit-learn's metric"),
    ("metric", "similarity", "the similarity"),
    ("distance", "similarity", "the similarity", "this loss works on similarities"),
    ("similarity", "distance", "the distance", "this loss works on distances"),
    ("neg_margin", "margin", "the negative pairs' margin", "pytorch-metric-learning's neg_margin"),
    ("anchor", "anchors", "the anchors", "torch's anchor"),
    ("positive", "positives", "the positives", "torch's positive"),
    ("negative", "negatives", "the negatives", "torch's negative"),
    ("hard_negatives", "negatives", "the hard negatives"),
    ("candidates", "positives", "the positives"),
    ("query_embeddings", "queries", "the queries"),
    ("item_embeddings", "items", "the items"),
    ("reducer", "reduction", "the reduction"),
    ("miner", "mining", "the choice of tuples", "a string; a miner's mined triplets go in as triplets"),
    ("indices_tuple", "triplets", "the mined triplets", "pytorch-metric-learning's indices_tuple"),
    ("learn_beta", "beta", "a learnable β", "pass it, beta=np.array([1.2]): given, its gradient is returned"),
    (
        "mining",
        "adaptive_margins",
        "the paper's online hard negative mining",
        "the one choice of quadruplets is all of them",
    ),
)

# What a function does not take, and why (function name: {parameter: reason}).
NOT_TAKEN = {
    "quadruplet_loss": {
        "ref_embeddings": "its second term's negative pairs (n₁, n₂) are pairs of the batch; concatenate the "
        "references into the batch instead",
    },
    "npair_loss": {
        "ref_embeddings": "its pairs are the batch's own (one per class); for anchors against given positives, "
        "call npair_pairs_loss(anchors, positives)",
    },
}
for _name, _reasons in NOT_TAKEN.items():
    _reasons.setdefault("ref_labels", _reasons["ref_embeddings"])
for _name, _sharpness in (
    ("npair_loss", "its logits are the similarities themselves"),
    ("npair_pairs_loss", "its logits are the similarities themselves"),
    ("ntxent_loss", "its sharpness is temperature="),
    ("supcon_loss", "its sharpness is temperature="),
    ("multiple_negatives_ranking_loss", "its sharpness is scale="),
):
    NOT_TAKEN.setdefault(_name, {})["margin"] = f"a softmax cross-entropy over similarities has no margin; {_sharpness}"


def unknown_keyword_help(function, keywords):
    """The TypeError message for the first of ``keywords`` that ``function`` does not take, naming the parameter
    that means it here (or why it is not taken); None where every keyword is a parameter or no help is known (the
    function's own error then stands)."""
    parameters = inspect.signature(function).parameters
    name = function.__name__
    for keyword in keywords:
        if keyword in parameters:
            continue
        reason = NOT_TAKEN.get(name, {}).get(keyword)
        if reason is not None:
            return f"{name}() takes no {keyword}=: {reason}"
        for guess, right, what, *why in GUESSES:
            if guess == keyword and right in parameters:
                return f"{name}() takes no {keyword}=; {what} is {right}= here" + "".join(f" ({w})" for w in why)
        close = difflib.get_close_matches(keyword, parameters, n=1, cutoff=0.75)
        if close:
            return f"{name}() got an unexpected keyword argument '{keyword}'; did you mean {close[0]}=?"
    return None


def page_tables():
    """The user guide's vocabulary tables, as Markdown: the arrays, the hyper-parameters, the defaults that differ
    and the guesses."""

    def table(header, rows):
        return "\n".join([f"| {' | '.join(header)} |", "|" + "---|" * len(header), *rows])

    return "\n\n".join(
        [
            "### The arrays",
            table(("parameter", "meaning"), [f"| `{name}` | {meaning} |" for name, meaning in ARRAYS.items()]),
            "### The hyper-parameters",
            table(("parameter", "meaning"), [f"| `{name}` | {meaning} |" for name, meaning in HYPERPARAMETERS.items()]),
            "### Defaults that differ between losses, and why",
            table(
                ("parameter", "loss", "why"),
                [
                    f"| `{parameter}` | `{loss}` | {why} |"
                    for parameter, reasons in DIFFERING_DEFAULTS.items()
                    for loss, why in reasons.items()
                ],
            ),
            "### Names from elsewhere",
            table(
                ("you write", "metricloss says", "what it is"),
                [f"| `{guess}=` | `{right}=` | {'; '.join((what, *why))} |" for guess, right, what, *why in GUESSES]
                + [
                    f"| `{keyword}=` | — | `{name}` takes none: {reason} |"
                    for name, reasons in NOT_TAKEN.items()
                    for keyword, reason in reasons.items()
                    if keyword != "ref_labels"
                ],
            ),
        ]
    )
