"""Benchmark the pair-based family beyond the triplet loss (value and gradient): contrastive, triplet-center,
N-pair, quadruplet, lifted structure, generalized lifted structure, WARP, multi-similarity, circle, margin loss,
NT-Xent, SupCon and multiple-negatives ranking — metricloss's Numba kernels and NumPy reference against
pytorch-metric-learning on the CPU where it has the loss, and the two-GEMM floor.

Every cell runs in its own process (its peak memory growth is its own), with the environment the user has: no
threading variables are set. Ratios are taken between cells of the same run; times are medians.

    python benchmarks/losses_benchmark.py                    # the full table, written into docs/benchmarks.md
    python benchmarks/losses_benchmark.py --sizes 256 1024   # a quick look, nothing written
    python benchmarks/losses_benchmark.py --losses lifted    # some losses only
    python benchmarks/losses_benchmark.py --losses lifted --update  # and their rows replaced in the docs
"""

import argparse
import json
import os

from _harness import (
    TUNED_THREADS,
    format_memory,
    format_time,
    machine_line,
    measure,
    measure_cell,
    ratio,
    update_rows,
    write_section,
)

SIZES = (256, 1024, 4096)
DIM = 128
K = 4
BUDGET_SECONDS = 60.0
WARP_QUERIES = WARP_ITEMS = 10_000
WARP_POSITIVES = 10


def _batch(size):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((size, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)  # unit rows, so that the margins below are meaningful
    return x, np.repeat(np.arange(size // K), K)


def _lp(power=1):
    from pytorch_metric_learning import distances

    return distances.LpDistance(normalize_embeddings=False, power=power)


def _pml(loss, miner=None, references=None):
    """A (embeddings, labels) -> call factory for a PML loss (after its miner), forward and backward; with
    ``references(x, labels)`` -> (ref_emb, ref_labels), a query-vs-reference call."""
    import torch

    def make(x, labels):
        torch.set_num_threads(2)
        target = torch.as_tensor(labels)
        refs = {} if references is None else dict(zip(("ref_emb", "ref_labels"), references(x, labels), strict=True))
        refs = {k: torch.as_tensor(v) for k, v in refs.items()}

        def call():
            embeddings = torch.tensor(x, requires_grad=True)
            indices = None if miner is None else miner(embeddings, target, **refs)
            value = loss(embeddings, target, indices, **refs)
            value.backward()
            return value.item(), embeddings.grad

        return call

    return make


def _centers(x, labels):
    import numpy as np

    import metricloss as ml

    return ml.init_centers(x, labels), np.arange(labels.max() + 1)


# name: (metricloss: (x, labels, backend) -> call, or with backend None for a loss without kernels;
#        PML: a factory of (x, labels) -> call, or None; PML's peak memory estimate in bytes for B, or None)
def _losses():
    import numpy as np

    import metricloss as ml

    def ours(loss, **options):
        def make(x, labels, backend):
            return lambda: loss(x, labels, **options, **({} if backend is None else {"backend": backend}))

        return make

    def pml_losses():
        from pytorch_metric_learning import losses, miners

        return losses, miners

    def triplet_center(x, labels, backend):
        centers = ml.init_centers(x, labels)
        options = {"halved": False, "distance": "sqeuclidean", "reduction": "mean_nonzero", "backend": backend}
        return lambda: ml.triplet_center_loss(x, labels, centers=centers, **options)

    def pml_triplet_center(x, labels):
        losses, miners = pml_losses()
        loss = losses.TripletMarginLoss(margin=5.0, distance=_lp(2))
        return _pml(loss, miners.BatchHardMiner(distance=_lp(2)), _centers)(x, labels)

    def pml(name, **options):
        return lambda x, labels: _pml(getattr(pml_losses()[0], name)(**options))(x, labels)

    def partners(x):
        """Each sample's candidate: the other sample of its pair within the class (classes of K = 4)."""
        return x[np.arange(x.shape[0]) ^ 1]

    def ranking(x, labels, backend):
        options = {} if backend is None else {"backend": backend}
        return lambda: ml.multiple_negatives_ranking_loss(x, partners(x), **options)

    def pml_ranking(x, labels):
        # One positive per query, every other candidate a negative, the mean over queries: NT-Xent with τ = 1/20
        # on (query, candidate) labels 0..B-1 is the multiple-negatives ranking loss at scale 20.
        def references(x, labels):
            return partners(x), np.arange(x.shape[0])

        loss = pml_losses()[0].NTXentLoss(temperature=1 / 20)
        return _pml(loss, references=references)(x, np.arange(x.shape[0]))

    def pml_multi_similarity_mined(x, labels):
        losses, miners = pml_losses()
        return _pml(losses.MultiSimilarityLoss(), miners.MultiSimilarityMiner(epsilon=0.1))(x, labels)

    return {
        "contrastive (linear, m = 0.5)": (
            ours(ml.contrastive_loss, form="linear", margin=0.5, reduction="mean_nonzero", split_reduction=True),
            pml("ContrastiveLoss", pos_margin=0.0, neg_margin=0.5, distance=_lp()),
            None,
            True,
        ),
        "triplet-center (learnable centres, C = B/4)": (triplet_center, pml_triplet_center, None, True),
        "N-pair (pairs from the labelled batch)": (
            ours(ml.npair_loss),
            pml("NPairsLoss", distance=_dot()),
            None,
            False,  # its dot products reach no kernel: numpy runs what numba runs
        ),
        "quadruplet (all)": (ours(ml.quadruplet_loss), None, None, True),
        "quadruplet (adaptive margins)": (ours(ml.quadruplet_loss, adaptive_margins=True), None, None, True),
        "lifted structure": (
            ours(ml.lifted_structure_loss),
            pml("LiftedStructureLoss", distance=_lp()),
            lambda size: 22 * size * (K - 1) * size * size,  # ≈22 bytes per (positive pair, negative pair)
            True,
        ),
        "generalized lifted structure": (
            ours(ml.generalized_lifted_structure_loss, incomplete_anchors="keep"),
            pml("GeneralizedLiftedStructureLoss", distance=_lp()),
            None,
            True,
        ),
        "multi-similarity (no mining)": (ours(ml.multi_similarity_loss), pml("MultiSimilarityLoss"), None, True),
        "multi-similarity (ε mining, PML: MultiSimilarityMiner)": (
            ours(ml.multi_similarity_loss, mining="epsilon"),
            pml_multi_similarity_mined,
            None,
            True,
        ),
        "margin loss (all triplets, β = 1.2)": (
            ours(ml.margin_loss),
            pml("MarginLoss", margin=0.2, nu=0.0, beta=1.2, distance=_lp()),
            lambda size: 40 * size * (K - 1) * size,  # PML lists every triplet: O(B³)
            True,
        ),
        "NT-Xent (labels, τ = 0.07)": (
            ours(ml.ntxent_loss),
            pml("NTXentLoss", temperature=0.07),
            lambda size: 16 * size * (K - 1) * size,  # PML forms (positive pair × reference) arrays: O(B³)
            True,
        ),
        "SupCon (τ = 0.1)": (ours(ml.supcon_loss), pml("SupConLoss", temperature=0.1), None, True),
        "multiple-negatives ranking (B queries × B candidates, scale 20)": (
            ranking,
            pml_ranking,
            lambda size: 16 * size**3,  # PML's NT-Xent: (B positive pairs) × (B(B−1) negative pairs) arrays
            True,
        ),
        "circle (per anchor, m = 0.4, γ = 80)": (
            ours(ml.circle_loss, margin=0.4, scale=80.0),
            pml("CircleLoss", m=0.4, gamma=80),
            None,
            True,
        ),
    }


def _dot():
    from pytorch_metric_learning import distances

    return distances.DotProductSimilarity(normalize_embeddings=False)


def run_cell(method, name, size):
    """In the child process: build the inputs, warm up (compile) on a small batch, measure."""
    import numpy as np

    if name == "WARP":
        return _run_warp_cell(method)
    x, labels = _batch(size)
    if method == "floor":
        other, scale = x.copy(), np.ones((size, size), dtype=np.float32)
        return measure(lambda: (x @ other.T, scale @ x), BUDGET_SECONDS)
    ours, make_pml, _, has_kernels = _losses()[name]
    if method == "pml":
        make_pml(x[:64], labels[:64])()
        return measure(make_pml(x, labels), BUDGET_SECONDS)
    backend = method if has_kernels else None
    ours(x[:64], labels[:64], backend)()  # compile, import
    return measure(ours(x, labels, backend), BUDGET_SECONDS)


def _run_warp_cell(method):
    """WARP on 10⁴ queries × 10⁴ items with 10 positives each: the score matrix (float32) and the form on
    dot-product embeddings (F = 64)."""
    import numpy as np

    import metricloss as ml

    rng = np.random.default_rng(0)
    relevance = np.zeros((WARP_QUERIES, WARP_ITEMS), dtype=bool)
    rows = np.repeat(np.arange(WARP_QUERIES), WARP_POSITIVES)
    relevance[rows, rng.integers(0, WARP_ITEMS, size=rows.size)] = True
    if method == "scores":
        scores = rng.standard_normal((WARP_QUERIES, WARP_ITEMS)).astype(np.float32)
        ml.warp_loss(scores[:64, :64], relevance[:64, :64], rng=0)
        return measure(lambda: ml.warp_loss(scores, relevance, rng=0), BUDGET_SECONDS)
    queries = rng.standard_normal((WARP_QUERIES, 64)).astype(np.float32)
    items = rng.standard_normal((WARP_ITEMS, 64)).astype(np.float32)
    ml.warp_embedding_loss(queries[:64], items[:64], relevance[:64, :64], rng=0)
    return measure(lambda: ml.warp_embedding_loss(queries, items, relevance, rng=0), BUDGET_SECONDS)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--losses", nargs="+", default=None, help="names (or parts of names) of the losses to run")
    parser.add_argument("--write", action="store_true", help="write the table even for a partial run")
    parser.add_argument(
        "--update", action="store_true", help="put a partial run's rows into the written table, in place of theirs"
    )
    parser.add_argument("--cell", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cell:
        print(json.dumps(run_cell(*json.loads(args.cell))))
        return
    names = [n for n in _losses() if not args.losses or any(part in n for part in args.losses)]
    write = args.write or (args.sizes == list(SIZES) and args.losses is None)

    def cell(*cell_args, env=None):
        return measure_cell(__file__, list(cell_args), budget=BUDGET_SECONDS, env=env)

    tuned = {**os.environ, **TUNED_THREADS}

    floors = {size: cell("floor", None, size) for size in args.sizes}
    header = (
        "| loss | B | metricloss (numba) | numba, tuned | metricloss (numpy) | PML | two-GEMM floor "
        "| PML / numba | numba / floor | peak growth numba | peak growth PML |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = []
    print(header, flush=True)
    memory_limit = 0.6 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for name in names:
        _, make_pml, pml_bytes, has_kernels = _losses()[name]
        for size in args.sizes:
            numba, numba_tuned = cell("numba", name, size), cell("numba", name, size, env=tuned)
            numpy = cell("numpy", name, size) if has_kernels else {"skipped": "no kernels: as numba"}
            if make_pml is None:
                pml = {"skipped": "no PML twin"}
            elif pml_bytes is not None and pml_bytes(size) > memory_limit:
                pml = {"skipped": f"needs ≈{pml_bytes(size) / 2**30:.0f} GB"}
            else:
                pml = cell("pml", name, size)
            floor = floors[size]
            row = (
                f"| {name} | {size} | {format_time(numba, 'median')} | {format_time(numba_tuned, 'median')} "
                f"| {format_time(numpy, 'median')} "
                f"| {format_time(pml, 'median')} | {format_time(floor, 'median')} | {ratio(pml, numba, 'median')} "
                f"| {ratio(numba, floor, 'median')} | {format_memory(numba)} | {format_memory(pml)} |"
            )
            rows.append(row)
            print(row, flush=True)
    warp_header = (
        "| WARP, 10⁴ queries × 10⁴ items, 10 positives each | median | best | peak growth |\n|---|---|---|---|"
    )
    warp_rows = []
    if args.losses is None or any(part in "WARP" for part in args.losses):
        print(warp_header, flush=True)
        for method, what in (("scores", "score matrix (float32)"), ("embeddings", "dot-product embeddings, F = 64")):
            result = cell(method, "WARP", 0)
            warp_rows.append(
                f"| {what} | {format_time(result, 'median')} | {format_time(result)} | {format_memory(result)} |"
            )
            print(warp_rows[-1], flush=True)
    if args.update:
        what = ", ".join(dict.fromkeys(row.split("|")[1].strip() for row in rows))
        note = (
            f"Re-measured with `--losses ... --update` on {machine_line('default threading')}: {what} "
            f"(B = {', '.join(map(str, args.sizes))}); the other rows are from the full run above."
        )
        update_rows("losses", rows, note)
    elif write:
        text = (
            "## The pair-based family: contrastive, triplet-center, N-pair, quadruplet, lifted, WARP, "
            "multi-similarity, circle, margin, NT-Xent, SupCon, multiple-negatives ranking\n\n"
            f"Written by `python benchmarks/losses_benchmark.py` on {machine_line('default threading')}.\n\n"
            f"Value and gradient on float32 unit-norm embeddings of dimension {DIM} with P×K labels (K = {K}). Times "
            "are medians of 3 to 50 calls (a second of them) after warm-up, each cell in its own process, with no "
            "threading variables set (the column *tuned*: with "
            + " ".join(f"`{k}={v}`" for k, v in TUNED_THREADS.items())
            + ", which make OpenBLAS's and the OpenMP threads sleep after their work instead of spinning); "
            "*peak growth* is the resident set's high-water mark during the first call "
            "minus the resident set before it. The floor is one B×B×128 GEMM for the distances plus one for the "
            "gradient. PML is pytorch-metric-learning with `LpDistance(normalize_embeddings=False)` "
            "(N-pair: `DotProductSimilarity(normalize_embeddings=False)`), default reducers; its configurations "
            "match metricloss's as the loss docstrings state (the parity tests pin them). N-pair: both take one "
            "pair per class from the labelled batch (`npair_loss(x, labels)`, `NPairsLoss`). Triplet-center: "
            "PML's twin is `TripletMarginLoss(margin=5, distance=LpDistance(power=2))` after `BatchHardMiner`, "
            "against the centres (`ref_emb`); metricloss's `halved=False, distance='sqeuclidean', "
            "reduction='mean_nonzero'`. Generalized lifted: `incomplete_anchors='keep'`, as PML. Multiple-negatives "
            "ranking: each anchor's positive is the other sample of its pair within its class; PML's twin is "
            "`NTXentLoss(temperature=1/20)` with the candidates as `ref_emb` and labels 0..B−1 on both sides.\n\n"
            + header
            + "\n"
            + "\n".join(rows)
            + "\n\n"
            + warp_header
            + "\n"
            + "\n".join(warp_rows)
        )
        write_section("losses", text)


if __name__ == "__main__":
    main()
