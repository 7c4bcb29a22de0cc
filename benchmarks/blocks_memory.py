"""Peak memory of the batch losses that run in blocks of anchor rows, at batch sizes whose distance matrix alone
would not fit: float32, D = 128, P×K batches with K = 4, value and gradient, each loss's defaults, the default
working memory (1024 MiB).

Each cell runs in a child process of its own: one call on the first 256 rows (imports, Numba's cache), then the
measured call. Its peak is measured twice over the inputs: the growth of the resident set (VmHWM), which counts
every allocation, NumPy's and Numba's, and tracemalloc's peak, which counts NumPy's (and Python's) only. Each
measured cell is recorded in blocks_memory.json (a cell measured again replaces its record), and the table in
docs/benchmarks.md is written from every recorded cell, so that runs of a few cells each make one table:

    python benchmarks/blocks_memory.py [B ...] [name ...]    # measure (default B = 16384 and 65536, every loss)
    python benchmarks/blocks_memory.py 262144 NT-Xent "mining='hard'"   # names match by part
    python benchmarks/blocks_memory.py --write               # write the table of every recorded cell
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
from _harness import format_memory, format_time, machine_line, measure_cell, write_section

FEATURES, PER_CLASS = 128, 4
RECORD = Path(__file__).with_name("blocks_memory.json")  # every measured cell, by "name | B"
# name: (the function's name in metricloss, its calling form, hyper-parameters other than the defaults). Calling
# forms: "labelled" is loss(x, labels) (the N-pair loss's pairs taken from the labelled batch too); "ranking" is
# loss(x, positives), each anchor's positive the other sample of its pair within its class.
LOSSES = {
    "triplet, mining='all'": ("triplet_loss", "labelled", {"mining": "all"}),
    "triplet, mining='hard'": ("triplet_loss", "labelled", {"mining": "hard"}),
    "triplet, mining='semihard'": ("triplet_loss", "labelled", {"mining": "semihard"}),
    "contrastive": ("contrastive_loss", "labelled", {}),
    "contrastive, PML's form": (
        "contrastive_loss",
        "labelled",
        {"form": "linear", "reduction": "mean_nonzero", "split_reduction": True},
    ),
    "NT-Xent": ("ntxent_loss", "labelled", {}),
    "SupCon": ("supcon_loss", "labelled", {}),
    "multi-similarity": ("multi_similarity_loss", "labelled", {}),
    "circle": ("circle_loss", "labelled", {}),
    "lifted structure": ("lifted_structure_loss", "labelled", {}),
    "generalized lifted": ("generalized_lifted_structure_loss", "labelled", {}),
    "triplet-center (batch's class means)": ("triplet_center_loss", "labelled", {}),
    "margin": ("margin_loss", "labelled", {}),
    "N-pair (pairs from the labelled batch)": ("npair_loss", "labelled", {}),
    "multiple-negatives ranking (B queries × B candidates)": ("multiple_negatives_ranking_loss", "ranking", {}),
}


def _call(name, x, labels):
    import metricloss as ml

    function, form, hyper = LOSSES[name]
    loss = getattr(ml, function)
    if form == "ranking":
        positives = x[np.arange(x.shape[0]) ^ 1]
        return lambda: loss(x, positives, **hyper)
    return lambda: loss(x, labels, **hyper)


def run_cell(n, name):
    import tracemalloc

    from _harness import measure

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, FEATURES)).astype(np.float32)
    labels = np.arange(n) // PER_CLASS
    _call(name, x[:256], labels[:256])()  # imports, Numba's cache
    tracemalloc.start()
    cell = measure(_call(name, x, labels), budget=0.0)  # one call: its time and peaks
    print(json.dumps(cell))


def _recorded():
    return json.loads(RECORD.read_text()) if RECORD.exists() else {}


def _record(name, n, cell):
    """Keep the cell in RECORD (read again just before writing: another run may have recorded cells meanwhile)."""
    recorded = _recorded()
    recorded[f"{name} | {n}"] = {**cell, "date": time.strftime("%Y-%m-%d")}
    RECORD.write_text(json.dumps(recorded, indent=1, ensure_ascii=False) + "\n")


def _row(name, n, cell):
    traced = format_memory(cell, "traced_peak_growth") if "traced_peak_growth" in cell else "not measured"
    name = f"{name} †" if "before" in cell else name
    return (
        f"| {name} | {n:,} | {n * n * 4 / 2**30:.0f} GiB | {format_memory(cell)} | {traced} | {format_time(cell)} |"
    )


def _over_the_bar(cells):
    """The sentence naming the losses measured over issue 21's bar: 2 GiB over the inputs at B = 65,536."""
    over = [f"{name} ({format_memory(cell)})" for _, n, name, cell in cells if n == 65536 and "before" not in cell
            and cell.get("peak_growth", 0) > 2 * 2**30]
    return f" Over 2 GiB at B = 65,536: {', '.join(over)}." if over else ""


HEADER = (
    "| loss | B | one B×B float32 matrix | peak resident (VmHWM) over the inputs | tracemalloc peak over the inputs "
    "| time |\n|---|---|---|---|---|---|"
)


def measure_cells(sizes, names):
    print(HEADER, flush=True)
    for n in sizes:
        for name in names:
            cell = measure_cell(__file__, [n, name], budget=4 * 3600)  # the peak of a slow call counts too
            _record(name, n, cell)
            print(_row(name, n, cell), flush=True)


def write_table():
    """The table of every recorded cell, by loss (in LOSSES's order) and B."""
    recorded = _recorded()
    cells = sorted(
        (list(LOSSES).index(name), int(n), name, cell)
        for name, n, cell in ((*key.split(" | "), cell) for key, cell in recorded.items())
    )
    dates = sorted({cell["date"] for *_, cell in cells})
    carried = sorted({cell["carried_from"] for *_, cell in cells if "carried_from" in cell})
    before = sorted({cell["before"] for *_, cell in cells if "before" in cell})
    before = (
        f" Rows marked † were measured with the engine before {', '.join(before)} (the working memory counted each "
        "block row twice, so blocks of half the rows, and each block's matrix was held while the next one was "
        "computed): they do not describe the engine today."
        if before
        else ""
    )
    carried = (
        f" Rows whose tracemalloc peak is *not measured* are carried from this table as {', '.join(carried)} wrote "
        "it (measured the same way but for the warm-up call and tracemalloc)."
        if carried
        else ""
    )
    text = "\n".join(
        [
            "## Memory in blocks of rows",
            "",
            f"{machine_line('default threading')}; measured {' to '.join(dict.fromkeys([dates[0], dates[-1]]))}. "
            "Peak memory over the inputs, one call (value and gradient) after one on the first 256 rows, float32, "
            "D = 128, P×K batches with K = 4, each loss's defaults, default working memory (1024 MiB): "
            "`python benchmarks/blocks_memory.py [B ...] [name ...]` measures cells into "
            "`benchmarks/blocks_memory.json`, `python benchmarks/blocks_memory.py --write` writes this table from "
            "them. Two peaks: the resident set's (every allocation, NumPy's and Numba's) and tracemalloc's "
            "(NumPy's only). The N-pair loss takes its pairs from the labelled batch (`npair_loss(x, labels)`); "
            "the multiple-negatives ranking loss takes B queries against B candidates, each query's the other "
            "sample of its pair. MB here are MiB. Some times were measured with other work sharing the 2 cores "
            "(NT-Xent, SupCon, triplet-center, N-pair: pessimistic); the memory is "
            "not affected. The budget holds a block's matrix and the arrays of its size that the loss's body keeps "
            "at once, as many as the loss declares (`block_matrices`: 1 for the triplet, contrastive, lifted and "
            "margin losses, 2 for NT-Xent, SupCon and multiple-negatives ranking, 3 for multi-similarity, 5 for "
            "circle), and the whole batch is one block while they fit (B = 16,384: one block for the triplet loss; "
            "B = 65,536: blocks of 4,096 rows for it, 1,365 for multi-similarity); each block's matrix is computed "
            "in the memory of the block before it, so a loss's peak is about the budget plus its arrays of the "
            "candidates' size." + _over_the_bar(cells) + before + carried,
            "",
            HEADER,
            *(_row(name, n, cell) for _, n, name, cell in cells),
        ]
    )
    print(text)
    write_section("blocks-memory", text)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--cell":
        run_cell(*json.loads(sys.argv[2]))
    else:
        args = [a for a in sys.argv[1:] if a != "--write"]
        if args or "--write" not in sys.argv:
            sizes = [int(a) for a in args if a.isdigit()] or [16384, 65536]
            names = [n for n in LOSSES if any(part in n for part in args if not part.isdigit())] or list(LOSSES)
            measure_cells(sizes, names)
        if "--write" in sys.argv:
            write_table()
