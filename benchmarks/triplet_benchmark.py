"""Benchmark the online triplet loss (value and gradient): metricloss's Numba kernels and its NumPy reference,
pytorch-metric-learning on the CPU, and the floor, the two GEMMs that the chain rule needs at that size.

Every cell runs in its own process, so that its peak memory growth (the resident set's high-water mark during
the first call, minus the resident set before it) is its own, with the environment the user has (no threading
variables set); the Numba cells are measured twice more: with one CPU-bound process running beside them, and
tuned (with ``_harness.TUNED_THREADS`` set, which make the BLAS and OpenMP threads sleep after their work). A cell
that would need more memory than the machine has is reported with the estimate instead of being run; one that runs
past the time budget is reported as such. Ratios are taken between cells measured in the same run.

    python benchmarks/triplet_benchmark.py                    # the full table, written into docs/benchmarks.md
    python benchmarks/triplet_benchmark.py --sizes 256 1024   # a quick look, nothing written
"""

import argparse
import json
import os
from pathlib import Path

from _harness import (
    DOCS,
    TUNED_THREADS,
    another_busy_process,
    format_memory,
    format_time,
    machine_line,
    measure,
    measure_cell,
    ratio,
    write_section,
)

SIZES = (256, 1024, 4096, 16384)
DIM = 128
BUDGET_SECONDS = 60.0
STRATEGIES = {  # name: (metricloss mining, pytorch-metric-learning miner or None for all triplets, or no PML twin)
    "batch-all": ("all", "none"),
    "semi-hard (PML's: every semi-hard triplet)": ("all_semihard", "semihard"),
    "semi-hard (FaceNet / TF-Addons: one per positive pair)": ("semihard", None),
    "batch-hard": ("hard", "batchhard"),
}


def _inputs(size, k):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((size, DIM)).astype(np.float32)
    labels = np.repeat(np.arange(size // k), k)
    return x, labels


def run_cell(method, mining, pml_miner, size, k):
    """Runs in the child process: build the inputs, warm up on a small batch, measure."""
    import numpy as np

    x, labels = _inputs(size, k)
    if method == "floor":
        other = x.copy()
        scale = np.ones((size, size), dtype=np.float32)
        return measure(lambda: (x @ other.T, scale @ x), BUDGET_SECONDS)
    if method in ("numba", "numpy"):
        import metricloss as ml

        ml.triplet_loss(x[:64], labels[:64], mining=mining, backend=method)  # compile, import
        return measure(lambda: ml.triplet_loss(x, labels, mining=mining, backend=method), BUDGET_SECONDS)

    import torch
    from pytorch_metric_learning import distances, losses, miners

    torch.set_num_threads(2)
    distance = distances.LpDistance(normalize_embeddings=False)
    loss = losses.TripletMarginLoss(margin=1.0, distance=distance)
    miner = {
        "none": None,
        "semihard": miners.TripletMarginMiner(margin=1.0, type_of_triplets="semihard", distance=distance),
        "batchhard": miners.BatchHardMiner(distance=distance),
    }[pml_miner]

    def call():
        embeddings = torch.tensor(x, requires_grad=True)
        target = torch.as_tensor(labels)
        value = loss(embeddings, target, None if miner is None else miner(embeddings, target))
        value.backward()
        return value.item(), embeddings.grad

    small = torch.tensor(x[:64])
    loss(small, torch.as_tensor(labels[:64]))
    return measure(call, BUDGET_SECONDS)


def _pml_estimate_bytes(size, k, pml_miner):
    """PML materialises every triplet's indices (int64 ×3) and distances (several float32 per triplet); batch-hard
    only B×B matrices."""
    if pml_miner == "batchhard":
        return 6 * size * size * 4
    triplets = size * (k - 1) * (size - k)
    return triplets * (3 * 8 + 4 * 4)


def measure_method(method, strategy, size, k, memory_limit, env=None):
    mining, pml_miner = STRATEGIES[strategy] if strategy else (None, None)
    if method == "pml":
        if pml_miner is None:
            return {"skipped": "no PML twin"}
        need = _pml_estimate_bytes(size, k, pml_miner)
        if need > memory_limit:
            return {"skipped": f"needs ≈{need / 2**30:.0f} GB"}
    return measure_cell(__file__, [method, mining, pml_miner, size, k], budget=BUDGET_SECONDS, env=env)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--large-class-sizes", type=int, nargs="*", default=[1024, 4096])
    parser.add_argument("--write", type=Path, default=None, help="markdown file to write the table into")
    parser.add_argument("--cell", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cell:
        print(json.dumps(run_cell(*json.loads(args.cell))))
        return
    if args.write is None and args.sizes == list(SIZES):
        args.write = DOCS

    memory_limit = 0.6 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    tuned = {**os.environ, **TUNED_THREADS}
    cases = [(strategy, size, 4) for strategy in STRATEGIES for size in args.sizes]
    cases += [(strategy, size, size // 4) for strategy in STRATEGIES for size in args.large_class_sizes]
    floors = {size: measure_method("floor", None, size, 4, memory_limit) for size in sorted({s for _, s, _ in cases})}

    header = (
        "| strategy | B | K | metricloss (numba) | numba, tuned | default / tuned | numba, another process busy "
        "| tuned, another process busy | default / tuned, busy | metricloss (numpy) | PML | two-GEMM floor "
        "| PML / numba | numba / floor | peak growth numba | peak growth PML |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = []
    print(header, flush=True)
    for strategy, size, k in cases:
        cells = {
            method: measure_method(method, strategy, size, k, memory_limit) for method in ("numba", "numpy", "pml")
        }
        tuned_cell = measure_method("numba", strategy, size, k, memory_limit, tuned)
        with another_busy_process():
            loaded = measure_method("numba", strategy, size, k, memory_limit)
            loaded_tuned = measure_method("numba", strategy, size, k, memory_limit, tuned)
        floor = floors[size]
        row = (
            f"| {strategy} | {size} | {k} | {format_time(cells['numba'], 'median')} "
            f"| {format_time(tuned_cell, 'median')} | {ratio(cells['numba'], tuned_cell, 'median')} "
            f"| {format_time(loaded, 'median')} | {format_time(loaded_tuned, 'median')} "
            f"| {ratio(loaded, loaded_tuned, 'median')} | {format_time(cells['numpy'], 'median')} "
            f"| {format_time(cells['pml'], 'median')} "
            f"| {format_time(floor, 'median')} | {ratio(cells['pml'], cells['numba'], 'median')} "
            f"| {ratio(cells['numba'], floor, 'median')} | {format_memory(cells['numba'])} "
            f"| {format_memory(cells['pml'])} |"
        )
        rows.append(row)
        print(row, flush=True)

    if args.write:
        text = (
            "## The online triplet loss\n\n"
            f"Written by `python benchmarks/triplet_benchmark.py` on {machine_line('default threading')}.\n\n"
            "The online triplet loss, value and gradient, on float32 embeddings of dimension 128 with P×K labels, "
            "margin 1. Times are medians of 3 to 50 calls (a second of them, where the budget allows) after warm-up, "
            "each cell in its own process with the default settings (no threading variables set); *another process "
            "busy*: with one CPU-bound process running beside it; *tuned*: with "
            + " ".join(f"`{k}={v}`" for k, v in TUNED_THREADS.items())
            + ", which make OpenBLAS's and the OpenMP pool's threads sleep after their work instead of spinning. "
            "*Peak growth* is the resident set's high-water mark during the first call minus the resident set "
            "before it. The floor is one B×B×128 GEMM for the distances plus one for the gradient, measured in the "
            "same run. PML is pytorch-metric-learning's `TripletMarginLoss` with "
            "`LpDistance(normalize_embeddings=False)` (with `TripletMarginMiner(type_of_triplets='semihard')` or "
            "`BatchHardMiner()`); its cells that would need more than 60% of the machine's memory are reported with "
            "its estimate instead of being run.\n\n" + header + "\n" + "\n".join(rows)
        )
        write_section("triplet", text, args.write)


if __name__ == "__main__":
    main()
