"""Benchmark the online triplet loss on a GPU (value and gradient): metricloss on torch CUDA tensors (taken in
place, ``metricloss._kernels._gpu``) against pytorch-metric-learning on the same GPU, a hand-written torch
batch-hard, and the floor, the two GEMMs that the chain rule needs at that size, with the peak GPU memory of each.

Every cell runs in its own process (its peak is its own: ``torch.cuda.max_memory_allocated``, which sees
metricloss's device arrays too, since on torch input they are allocated by torch). Times are medians of CUDA-synced
calls after a warm-up; ratios are taken between cells of the same run.

    python benchmarks/gpu_benchmark.py                 # B ∈ {1024, 4096, 16384}, written into docs/benchmarks.md
    python benchmarks/gpu_benchmark.py --sizes 1024    # a quick look, nothing written

Needs an NVIDIA GPU, torch with CUDA and the ``[cuda]`` extra (numba-cuda); without a GPU it says so and exits
with status 2. (No GPU has been lent to the sessions that wrote it: it has not run yet.)
"""

import argparse
import json
import sys
import time

from _harness import DOCS, measure_cell, ratio, write_section

SIZES = (1024, 4096, 16384)
DIM = 128
K = 4
MARGIN = 1.0
BUDGET_SECONDS = 120.0
STRATEGIES = {  # name: (metricloss mining, pytorch-metric-learning miner, or None for every triplet)
    "batch-all": ("all", None),
    "semi-hard (every semi-hard triplet)": ("all_semihard", "semihard"),
    "batch-hard": ("hard", "batchhard"),
}


def _inputs(size):
    import torch

    generator = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(size, DIM, device="cuda", dtype=torch.float32, generator=generator)
    return x, torch.arange(size, device="cuda") // K


def _torch_batch_hard(x, labels):
    """Batch-hard written in torch: farthest positive, closest negative, [d⁺ − d⁻ + m]₊ over complete anchors."""
    import torch

    d = torch.cdist(x, x)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
    hardest_positive = torch.where(same & ~eye, d, torch.zeros_like(d)).amax(dim=1)
    hardest_negative = torch.where(same, torch.full_like(d, float("inf")), d).amin(dim=1)
    complete = (same & ~eye).any(dim=1) & (~same).any(dim=1)
    return torch.relu(hardest_positive - hardest_negative + MARGIN)[complete].mean()


def _call(method, mining, pml_miner, x, labels):
    """One value-and-gradient call, returned as a function of nothing."""
    import torch

    if method == "floor":
        scale = torch.ones(x.shape[0], x.shape[0], device=x.device)
        return lambda: (x @ x.T, scale @ x)
    if method == "metricloss":
        import metricloss as ml

        return lambda: ml.triplet_loss(x, labels, mining=mining, margin=MARGIN)
    embeddings = x.clone().requires_grad_(True)
    if method == "torch":

        def hand_written():
            embeddings.grad = None
            _torch_batch_hard(embeddings, labels).backward()

        return hand_written
    from pytorch_metric_learning import distances, losses, miners

    distance = distances.LpDistance(normalize_embeddings=False)
    loss = losses.TripletMarginLoss(margin=MARGIN, distance=distance)
    miner = {
        None: None,
        "semihard": miners.TripletMarginMiner(margin=MARGIN, type_of_triplets="semihard", distance=distance),
        "batchhard": miners.BatchHardMiner(distance=distance),
    }[pml_miner]

    def pml():
        embeddings.grad = None
        loss(embeddings, labels, None if miner is None else miner(embeddings, labels)).backward()

    return pml


def run_cell(method, mining, pml_miner, size):
    """Runs in the child process: the first call's peak GPU memory, then the median of synced calls."""
    import torch

    x, labels = _inputs(size)
    small = _call(method, mining, pml_miner, x[:64].contiguous(), labels[:64])
    small()  # compile the kernels, import, warm up cuBLAS
    torch.cuda.synchronize()
    call = _call(method, mining, pml_miner, x, labels)
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    try:
        started = time.perf_counter()
        call()
        torch.cuda.synchronize()
    except torch.cuda.OutOfMemoryError:
        return {"skipped": "out of GPU memory"}
    first = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() - base
    times = []
    while len(times) < 3 or (sum(times) < 1.0 and len(times) < 50 and first * len(times) < BUDGET_SECONDS):
        started = time.perf_counter()
        call()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    times.sort()
    return {"seconds": times[len(times) // 2], "first": first, "peak_gpu": peak}


def _time(cell):
    if "skipped" in cell:
        return cell["skipped"]
    seconds = cell["seconds"]
    return f"{seconds * 1e3:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _memory(cell, size):
    if "skipped" in cell:
        return "—"
    return f"{cell['peak_gpu'] / 2**20:.0f} MB ({cell['peak_gpu'] / (size * size * 4):.2f}·B²·4)"


def _gpu_line():
    import numba
    import torch

    return (
        f"{time.strftime('%Y-%m-%d')}: {torch.cuda.get_device_name()}, torch {torch.__version__}, numba "
        f"{numba.__version__}"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--cell", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cell:
        print(json.dumps(run_cell(*json.loads(args.cell))))
        return
    import torch

    if not torch.cuda.is_available():
        print("gpu_benchmark.py needs an NVIDIA GPU with torch's CUDA build; none is usable here", file=sys.stderr)
        sys.exit(2)
    write = args.sizes == list(SIZES)
    header = (
        "| strategy | B | metricloss (cuda) | PML (same GPU) | torch, hand-written | two-GEMM floor | PML / metricloss "
        "| metricloss / floor | peak metricloss | peak PML |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    print(header, flush=True)
    rows = []
    for size in args.sizes:
        floor = measure_cell(__file__, ["floor", None, None, size], budget=BUDGET_SECONDS)
        for strategy, (mining, pml_miner) in STRATEGIES.items():
            ours = measure_cell(__file__, ["metricloss", mining, pml_miner, size], budget=BUDGET_SECONDS)
            pml = measure_cell(__file__, ["pml", mining, pml_miner, size], budget=BUDGET_SECONDS)
            hand = (
                measure_cell(__file__, ["torch", mining, pml_miner, size], budget=BUDGET_SECONDS)
                if mining == "hard"
                else {"skipped": "—"}
            )
            row = (
                f"| {strategy} | {size} | {_time(ours)} | {_time(pml)} | {_time(hand)} | {_time(floor)} "
                f"| {ratio(pml, ours)} | {ratio(ours, floor)} | {_memory(ours, size)} | {_memory(pml, size)} |"
            )
            rows.append(row)
            print(row, flush=True)
    if write:
        text = (
            "## The online triplet loss on a GPU\n\n"
            f"Written by `python benchmarks/gpu_benchmark.py` on {_gpu_line()}.\n\n"
            f"Value and gradient on float32 torch CUDA tensors of dimension {DIM}, P×K labels with K = {K}, margin 1. "
            "metricloss takes the tensors in place (`triplet_loss(x_cuda, labels_cuda, mining=...)`); PML is "
            "`TripletMarginLoss` with `LpDistance(normalize_embeddings=False)` (and `TripletMarginMiner('semihard')` "
            "or `BatchHardMiner()`) on the same GPU; the hand-written torch batch-hard is `cdist`, masked max/min and "
            "a ReLU. Times are medians of CUDA-synchronised calls after a warm-up; the peak is "
            "`torch.cuda.max_memory_allocated()` during the first call minus what was allocated before it (the "
            "inputs), each cell in its own process. The floor is one B×B×128 GEMM for the distances plus one for the "
            "gradient.\n\n" + header + "\n" + "\n".join(rows)
        )
        write_section("gpu", text, DOCS)


if __name__ == "__main__":
    main()
