"""Speed and peak memory of every batch loss, this tree against another revision of metricloss, with the default
settings (no ``backend=``, the default working memory, no threading variables): value and gradient on float32
unit-norm embeddings of dimension 128 with P×K labels (K = 4), the configurations of losses_benchmark.py and the
triplet loss's minings; WARP on its own sizes (losses_benchmark.py's 10⁴ queries × 10⁴ items, B written 0).

A child process with ``PYTHONPATH`` set to one tree or the other runs the losses at one B in turn (it reports the
``metricloss.__file__`` it imported, checked against the tree). For each loss: one warm-up call on the first 64
rows (imports, Numba's cache), then the first call at full size (its peak: the resident set's growth over the
resident set before it, after ``malloc_trim``; any code it loads or compiles is not timed), then one call or more
while they last under a second in all (the cell's time: their median). An old and a new process run side by side,
at the same time, through the same losses in the same order (``--repeats`` such pairs per B, one after the other),
so that whatever else runs on the machine hits both alike; a row's time is the median of its processes' times, its
peak the largest of their peaks.

    git worktree add --detach ../wt-old 19ef7aa
    python benchmarks/compare_revisions.py --baseline ../wt-old                      # measure, into the record
    python benchmarks/compare_revisions.py --baseline ../wt-old --losses NT-Xent --sizes 1024
    python benchmarks/compare_revisions.py --baseline ../wt-old --alternate   # one process at a time
    python benchmarks/compare_revisions.py --baseline ../wt-old --pairs 15    # the speed bar: paired ratios
    python benchmarks/compare_revisions.py --write                                   # the table, into the docs

``--pairs N`` measures speed alone, the way drift cancels: one long-lived process per tree, each holding the loss's
call ready (warmed up at full size), and N pairs of timings, the old process's call then the new one's (the order
swapped from pair to pair), one process working at a time; a row's new/old is the median of its N ratios, each
taken between two calls made seconds apart. A timing is the median of as many calls as last 0.2 s (one at least).

Each measured cell is added to compare_revisions.json as soon as its process reports it (``--fresh`` drops the
record first); ``--write`` writes the table of every recorded cell into docs/benchmarks.md.
"""

import argparse
import fcntl
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from _harness import ROOT, format_memory, format_time, machine_line, measure, write_section

SIZES = (1024, 4096, 16384)
REPEATS = 3
BAR = 1.05  # issue 21: new / old ≤ 1.05, and memory no worse
# every measured row, by "name | B" (COMPARE_RECORD names another file, for a trial run)
RECORD = Path(os.environ.get("COMPARE_RECORD", Path(__file__).with_name("compare_revisions.json")))
WARP = "WARP"
WARP_FORMS = {"scores": "WARP, score matrix (float32)", "embeddings": "WARP, dot-product embeddings (F = 64)"}


def _calls():
    """name: (x, labels) -> call, with every loss's other settings at their defaults."""
    from losses_benchmark import _losses

    import metricloss as ml

    def triplet(mining):
        return lambda x, labels: lambda: ml.triplet_loss(x, labels, mining=mining)

    calls = {f"triplet (mining='{mining}')": triplet(mining) for mining in ("all", "hard", "semihard")}
    for name, (ours, *_) in _losses().items():
        calls[name] = lambda x, labels, ours=ours: ours(x, labels, None)  # backend None: the default
    return calls


def _names():
    from losses_benchmark import _losses

    return [f"triplet (mining='{mining}')" for mining in ("all", "hard", "semihard")] + list(_losses()) + [WARP]


def run_cells(names, size):
    """In the child process: for each loss, warm up on 64 rows, measure at full size; one JSON line per loss."""
    import ctypes

    from losses_benchmark import _batch, _run_warp_cell

    import metricloss

    trim = ctypes.CDLL("libc.so.6").malloc_trim  # the freed memory of the loss before back to the system
    for name in names:
        trim(0)
        if name in WARP_FORMS:
            cell = _run_warp_cell(name)
        else:
            x, labels = _batch(size)
            make = _calls()[name]
            make(x[:64], labels[:64])()
            call = make(x, labels)
            trim(0)
            cell = measure(call, budget=0.0, cpu_warm_up=False)  # the first call at full size: its peak only
            times = []
            while not times or (sum(times) < 1.0 and len(times) < 50):
                started = time.perf_counter()
                call()
                times.append(time.perf_counter() - started)
            cell.update(seconds=min(times), median=statistics.median(times))
            del x, labels, make, call
        print(json.dumps({**cell, "name": name, "module": metricloss.__file__}), flush=True)


def serve_timings():
    """In a paired child process: read "name size" lines, answer each with the seconds of one timing of that loss
    (its call made and warmed up at full size on first request)."""
    from losses_benchmark import _batch, _run_warp_cell  # noqa: F401 (WARP is not paired)

    import metricloss

    print(json.dumps({"module": metricloss.__file__}), flush=True)
    ready = {}
    for line in sys.stdin:
        name, size = line.rsplit(" ", 1)
        if (name, size) not in ready:
            ready.clear()  # one loss at a time in memory
            x, labels = _batch(int(size))
            make = _calls()[name]
            make(x[:64], labels[:64])()
            ready[name, size] = make(x, labels)
            ready[name, size]()
        call, times = ready[name, size], []
        while not times or sum(times) < 0.2:
            started = time.perf_counter()
            call()
            times.append(time.perf_counter() - started)
        print(json.dumps({"seconds": statistics.median(times)}), flush=True)


class _TimingProcess:
    """A child process on one tree that times one call of a loss per request (``serve_timings``)."""

    def __init__(self, tree):
        env = {**os.environ, "PYTHONPATH": str(tree)}
        command = [sys.executable, __file__, "--serve"]
        self.child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        module = json.loads(self.child.stdout.readline())["module"]
        if not Path(module).resolve().is_relative_to(tree):
            raise RuntimeError(f"the process for {tree} imported metricloss from elsewhere")

    def time(self, name, size):
        self.child.stdin.write(f"{name} {size}\n")
        self.child.stdin.flush()
        return json.loads(self.child.stdout.readline())["seconds"]

    def close(self):
        self.child.stdin.close()
        self.child.wait()


def measure_pairs(baseline, sizes, names, pairs):
    """``pairs`` paired timings per row, old and new by turns (one process working at a time), into the record."""
    trees = {"old": baseline.resolve(), "new": ROOT}
    revisions = {which: _revision(tree) for which, tree in trees.items()}
    print(f"old: {trees['old']} at {revisions['old']}, new: {trees['new']} at {revisions['new']}", flush=True)
    processes = {which: _TimingProcess(tree) for which, tree in trees.items()}
    try:
        for size in sizes:
            for name in names:
                if name == WARP:
                    continue
                times = {"old": [], "new": []}
                for i in range(pairs):
                    for which in ("old", "new") if i % 2 == 0 else ("new", "old"):
                        times[which].append(processes[which].time(name, size))
                with open(RECORD, "a+") as record:
                    fcntl.flock(record, fcntl.LOCK_EX)
                    record.seek(0)
                    recorded = json.loads(record.read() or "{}")
                    row = recorded.setdefault(f"{name} | {size}", {"old": [], "new": []})
                    row["paired"] = {**times, "revisions": revisions, "date": time.strftime("%Y-%m-%d")}
                    record.seek(0)
                    record.truncate()
                    record.write(json.dumps(recorded, indent=1, ensure_ascii=False) + "\n")
                low, _, high = statistics.quantiles(_ratios(times), n=4)
                median = statistics.median(_ratios(times))
                print(f"{name} {size}: new/old {median:.3f} (middle half {low:.2f}–{high:.2f})", flush=True)
    finally:
        for process in processes.values():
            process.close()


def _run_process(tree, which, names, size, revisions, alternate=False):
    """One child process on ``tree``: its cells into the record as they come (``alternate``: it ran alone, the
    other tree's process before or after it, not beside it)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, __file__, "--cells", json.dumps([names, size])]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as child:
        for line in child.stdout:
            cell = json.loads(line)
            if not Path(cell.pop("module")).resolve().is_relative_to(tree):
                raise RuntimeError(f"the process for {tree} imported metricloss from elsewhere")
            name = cell.pop("name")
            with open(RECORD, "a+") as record:  # locked: runs for other sizes may record cells meanwhile
                fcntl.flock(record, fcntl.LOCK_EX)
                record.seek(0)
                recorded = json.loads(record.read() or "{}")
                row = recorded.setdefault(f"{name} | {size}", {"old": [], "new": []})
                if row.get("alternate", False) != alternate:  # a row's processes ran one way only
                    row.update(old=[], new=[], alternate=alternate)
                row[which].append(cell)
                row.update(revisions=revisions, date=time.strftime("%Y-%m-%d"))
                record.seek(0)
                record.truncate()
                record.write(json.dumps(recorded, indent=1, ensure_ascii=False) + "\n")
            print(f"{which} {name} {size}: {format_time(cell, 'median')}, {format_memory(cell)}", flush=True)
    if child.returncode != 0:
        print(f"{which} process at B = {size} failed ({child.returncode})", flush=True)


def _summary(cells):
    """The median of the processes' times, the largest of their peaks."""
    if not cells:
        return {"skipped": "not measured"}
    median = statistics.median(cell["median"] for cell in cells)
    return {"median": median, "peak_growth": max(cell["peak_growth"] for cell in cells), "runs": len(cells)}


def _revision(tree):
    return subprocess.run(
        ["git", "-C", str(tree), "log", "-1", "--format=%h"], capture_output=True, text=True, check=True
    ).stdout.strip()


def _recorded():
    return json.loads(RECORD.read_text()) if RECORD.exists() else {}


def _row(name, size, row):
    old, new = _summary(row["old"]), _summary(row["new"])
    name = f"{name} ‡" if row.get("alternate") else name
    if "skipped" in old or "skipped" in new:
        speed, verdict = "—", ""
    else:
        speed = new["median"] / old["median"]
        more_memory = new["peak_growth"] > old["peak_growth"] * BAR + 2**20
        misses = {"slower": speed > BAR, "more memory": more_memory}
        verdict = ", ".join(what for what, missed in misses.items() if missed) or "ok"
        speed = f"{speed:.2f}"
    return (
        f"| {name} | {size} | {format_time(old, 'median')} | {format_time(new, 'median')} | {speed} "
        f"| {format_memory(old)} | {format_memory(new)} | {len(row['old'])}, {len(row['new'])} | {verdict} |"
    )


HEADER = (
    "| loss | B | old | new | new/old | peak old | peak new | processes old, new | bar |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def measure_rows(baseline, sizes, names, repeats, alternate=False):
    new_tree, old_tree = ROOT, baseline.resolve()
    trees = {"old": old_tree, "new": new_tree}
    revisions = {which: _revision(tree) for which, tree in trees.items()}
    print(f"old: {old_tree} at {revisions['old']}, new: {new_tree} at {revisions['new']}", flush=True)
    groups = [(size, [name for name in names if name != WARP]) for size in sizes]
    if WARP in names:
        groups.append((0, list(WARP_FORMS)))
    for size, group in groups:
        for _ in range(repeats):
            if alternate:  # one process at a time, old then new: each has the machine to itself
                for which, tree in trees.items():
                    _run_process(tree, which, group, size, revisions, alternate=True)
                continue
            pair = [threading.Thread(target=_run_process, args=(trees[w], w, group, size, revisions)) for w in trees]
            for process in pair:
                process.start()
            for process in pair:
                process.join()


def _ratios(paired):
    """new / old of each pair of timings."""
    return [new / old for old, new in zip(paired["old"], paired["new"], strict=True)]


def _paired_table(recorded):
    """The rows timed with ``--pairs``: new/old as the median of the pairs' ratios, and the middle half of them."""
    rows = []
    for _, size, name, row in recorded:
        if "paired" not in row:
            continue
        times = row["paired"]
        ratios = _ratios(times)
        low, _, high = statistics.quantiles(ratios, n=4)
        verdict = "ok" if statistics.median(ratios) <= BAR else "slower"
        rows.append(
            f"| {name} | {size} | {format_time({'s': statistics.median(times['old'])}, 's')} "
            f"| {format_time({'s': statistics.median(times['new'])}, 's')} | {statistics.median(ratios):.3f} "
            f"| {low:.2f}–{high:.2f} | {len(ratios)} | {verdict} |"
        )
    if not rows:
        return []
    revisions = {
        f"{row['paired']['revisions']['old']} → {row['paired']['revisions']['new']}"
        for *_, row in recorded
        if "paired" in row
    }
    misses = sum(not row.endswith("| ok |") for row in rows)
    return [
        "",
        "### Speed in pairs",
        "",
        f"Measured by `python benchmarks/compare_revisions.py --baseline PATH --pairs N` (old → new: "
        f"{', '.join(sorted(revisions))}): one long-lived process per tree, each with the loss's call ready, timing "
        "one call (or as many as last 0.2 s, their median) by turns, old then new, new then old; new/old is the "
        "median of the pairs' ratios, so the machine's drift (±25 % from one minute to the next here) cancels "
        f"within a pair. {misses} of {len(rows)} rows miss the bar (new/old ≤ {BAR}).",
        "",
        "| loss | B | old (median) | new (median) | new/old, median of ratios | middle half of ratios | pairs | bar |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ]


def write_table():
    """The table of every recorded row, by loss (in _names()'s order, WARP's forms last) and B."""
    order = _names()[:-1] + list(WARP_FORMS)
    recorded = sorted(
        (order.index(name), int(size), name, row)
        for name, size, row in ((*key.split(" | "), row) for key, row in _recorded().items())
    )
    revisions = {f"{row['revisions']['old']} → {row['revisions']['new']}" for *_, row in recorded}
    rows = [_row(WARP_FORMS.get(name, name), size or "10⁴ × 10⁴", row) for _, size, name, row in recorded]
    misses = sum(not row.endswith("| ok |") for row in rows)
    text = "\n".join(
        [
            "## Old against new: issue 21's bar",
            "",
            f"Written by `python benchmarks/compare_revisions.py --write` from rows measured by `python "
            f"benchmarks/compare_revisions.py --baseline PATH` (old → new: {', '.join(sorted(revisions))}) on "
            f"{machine_line('default threading')}, with other work sharing the 2 cores (times are contended, old "
            "and new alike: an old and a new process ran side by side through the same losses in the same order; "
            "memory is not affected). Rows marked ‡ were measured with `--alternate`: the old and the new process "
            "one after the other, each with the machine to itself.",
            "",
            "Value and gradient with the default settings (no `backend=`, default working memory, no threading "
            "variables), the configurations of the table above, the triplet loss with each mining's defaults. "
            "A process runs the losses at one B in turn; for each it warms up on 64 rows, makes a first call at "
            "full size (its peak: the resident set's growth, after `malloc_trim`), then times one call or more "
            "while they last a second; a row's time is the median over its processes (their number in the column "
            "*processes*), its peak the largest of theirs. The bar (issue 21): new/old ≤ "
            f"{BAR} and peak new no worse than peak old (within {BAR}× + 1 MiB, the resident set's noise); "
            f"{misses} of {len(rows)} rows miss it.",
            "",
            HEADER,
            *rows,
            *_paired_table(recorded),
        ]
    )
    print(text)
    write_section("compare-revisions", text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="the other revision's tree (its metricloss/ is imported)")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--losses", nargs="+", default=None, help="names (or parts of names) of the losses to run")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="processes per tree and cell")
    parser.add_argument(
        "--alternate", action="store_true", help="run the old and the new process one after the other, not side by side"
    )
    parser.add_argument("--pairs", type=int, help="time speed alone: this many paired timings per row")
    parser.add_argument("--write", action="store_true", help="write the table of every recorded row into the docs")
    parser.add_argument("--fresh", action="store_true", help="drop the recorded cells before measuring")
    parser.add_argument("--cells", help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cells:
        run_cells(*json.loads(args.cells))
        return
    if args.serve:
        serve_timings()
        return
    if args.fresh and RECORD.exists():
        RECORD.unlink()
    if args.baseline is not None:
        names = [n for n in _names() if not args.losses or any(part in n for part in args.losses)]
        if args.pairs:
            measure_pairs(args.baseline, args.sizes, names, args.pairs)
        else:
            measure_rows(args.baseline, args.sizes, names, args.repeats, args.alternate)
    if args.write:
        write_table()


if __name__ == "__main__":
    main()
