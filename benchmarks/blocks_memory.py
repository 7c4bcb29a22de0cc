"""Peak memory of the batch losses that run in blocks of anchor rows, at batch sizes whose distance matrix alone
would not fit: float32, D = 128, P×K batches with K = 4, value and gradient, the default working memory (1024 MiB).

Each cell runs in a child process of its own, and its peak is the growth of the resident set (VmHWM) over the
inputs, so it counts every allocation, NumPy's and Numba's. Run: ``python benchmarks/blocks_memory.py [B ...]
[name ...]`` (default B = 16384 and 65536, and every loss in ``LOSSES``); ``--write`` puts the table in
docs/benchmarks.md.
"""

import json
import sys

import numpy as np
from _harness import format_memory, format_time, machine_line, measure_cell, write_section

FEATURES, PER_CLASS = 128, 4
LOSSES = {  # name: (the function's name in metricloss, its hyper-parameters)
    "triplet, mining='all'": ("triplet_loss", {"mining": "all"}),
    "triplet, mining='hard'": ("triplet_loss", {"mining": "hard"}),
    "triplet, mining='semihard'": ("triplet_loss", {"mining": "semihard"}),
    "contrastive": ("contrastive_loss", {}),
    "contrastive, PML's form": (
        "contrastive_loss",
        {"form": "linear", "reduction": "mean_nonzero", "split_reduction": True},
    ),
    "generalized lifted": ("generalized_lifted_structure_loss", {}),
}


def run_cell(n, name):
    from _harness import measure

    import metricloss as ml

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, FEATURES)).astype(np.float32)
    labels = np.arange(n) // PER_CLASS
    function, hyper = LOSSES[name]
    loss = getattr(ml, function)
    cell = measure(lambda: loss(x, labels, **hyper), budget=0.0)  # one call: its time and peak
    print(json.dumps(cell))


def main(sizes, names, write):
    rows = []
    for n in sizes:
        matrix = n * n * 4 / 2**30
        for name in names:
            cell = measure_cell(__file__, [n, name], budget=1800)
            rows.append(f"| {n:,} | {name} | {matrix:.0f} GiB | {format_memory(cell)} | {format_time(cell)} |")
            print(rows[-1], flush=True)
    table = "\n".join(
        [
            "## Memory in blocks of rows",
            "",
            f"{machine_line('default threading')}. Peak resident memory over the inputs, one call (value and "
            "gradient), float32, D = 128, P×K batches with K = 4, default working memory (1024 MiB): "
            "`python benchmarks/blocks_memory.py`.",
            "",
            "| B | loss | one B×B float32 matrix | peak over the inputs | time |",
            "|---|---|---|---|---|",
            *rows,
        ]
    )
    print(table)
    if write:
        write_section("blocks-memory", table)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--cell":
        run_cell(*json.loads(sys.argv[2]))
    else:
        args = [a for a in sys.argv[1:] if a != "--write"]
        sizes = [int(a) for a in args if a.isdigit()] or [16384, 65536]
        names = [a for a in args if not a.isdigit()] or list(LOSSES)
        main(sizes, names, "--write" in sys.argv)
