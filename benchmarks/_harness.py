"""What the benchmark scripts share: one measurement per child process (time and peak memory growth), the
formatting of cells and ratios, and writing a script's table into its own section of docs/benchmarks.md.

A script calls :func:`run_cells` with its own ``run_cell(*args)`` function; :func:`measure_cell` re-runs the script
as ``python script --cell JSON`` so that each cell's peak memory growth is its own.
"""

import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
# The tuned configuration the default settings are compared with: OpenBLAS's threads and the OpenMP pool's told to
# sleep after their work instead of spinning (read by those libraries at start-up; metricloss sets neither).
TUNED_THREADS = {"OMP_WAIT_POLICY": "passive", "OPENBLAS_THREAD_TIMEOUT": "4"}


def _status_bytes(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak_rss():
    """Linux: writing 5 to clear_refs resets the resident set's high-water mark (VmHWM) to the current size."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def warm_up_the_cpu(seconds=1.0):
    """The first second of heavy work runs slowly on these machines; measure after it."""
    import numpy as np

    w = np.ones((1024, 1024), dtype=np.float32)
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        w @ w


def measure(call, budget, *, cpu_warm_up=True):
    """Peak memory growth of the first call (before anything else big has been allocated and freed, which the
    call could reuse), then, after a warm-up (``cpu_warm_up``: a second of GEMMs), the best and the median of 3 to 50
    calls that last a second in all, within the budget (none where the first call took the budget: its time then).
    While tracemalloc traces, the first call's traced peak over what was traced before it is ``traced_peak_growth``
    too (NumPy's allocations, not Numba's)."""
    traced = tracemalloc.is_tracing()
    if traced:
        tracemalloc.reset_peak()
        traced_before = tracemalloc.get_traced_memory()[0]
    _reset_peak_rss()
    before = _status_bytes("VmRSS")
    started = time.perf_counter()
    call()
    first = time.perf_counter() - started
    growth = max(0, _status_bytes("VmHWM") - before)
    traced_growth = {"traced_peak_growth": tracemalloc.get_traced_memory()[1] - traced_before} if traced else {}
    if cpu_warm_up:
        warm_up_the_cpu()
    times = []
    while len(times) < 50 and (len(times) < 3 or sum(times) < 1.0) and sum(times) + first < min(budget, 10.0):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    times = sorted(times or [first])
    return {"seconds": times[0], "median": times[len(times) // 2], "peak_growth": growth, **traced_growth}


@contextlib.contextmanager
def another_busy_process():
    """One CPU-bound process running beside what is measured inside (a user's machine is rarely idle)."""
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        busy.kill()
        busy.wait()


def measure_cell(script, args, *, budget, env=None):
    """Run ``script --cell JSON(args)`` in a child process and return its measurement, or {"skipped": why}."""
    command = [sys.executable, str(script), "--cell", json.dumps(args)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=3 * budget, env=env)
    except subprocess.TimeoutExpired:
        return {"skipped": f"> {budget:.0f} s"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["failed"])[-1]
        return {"skipped": "out of memory" if "memory" in last.lower() else f"failed: {last[:60]}"}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["seconds"] > budget:
        return {"skipped": f"> {budget:.0f} s"}
    return result


def format_time(cell, key="seconds"):
    if "skipped" in cell:
        return cell["skipped"]
    seconds = cell[key]
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def format_memory(cell, key="peak_growth"):
    return "—" if "skipped" in cell else f"{cell[key] / 2**20:.0f} MB"


def ratio(numerator, denominator, key="seconds"):
    if "skipped" in numerator or "skipped" in denominator:
        return "—"
    return f"{numerator[key] / denominator[key]:.1f}×"


def machine_line(threading):
    """The machine and versions, for the sentence that opens a table."""
    import numba
    import numpy
    import torch

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{time.strftime('%Y-%m-%d')}: {os.cpu_count()} CPU cores, {memory:.0f} GiB, Python "
        f"{platform.python_version()}, numpy {numpy.__version__}, numba {numba.__version__}, torch "
        f"{torch.__version__} (2 threads), {threading}"
    )


def write_section(name, text, path=DOCS):
    """Put ``text`` between the markers ``<!-- name -->`` and ``<!-- /name -->`` of the docs page, replacing what
    was there (or appending the section), so that each benchmark script owns its own part of the page."""
    begin, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    page = path.read_text() if path.exists() else "# Benchmarks\n"
    section = f"{begin}\n{text.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.DOTALL)
    page = pattern.sub(lambda _: section, page) if pattern.search(page) else page.rstrip() + "\n\n" + section + "\n"
    path.parent.mkdir(exist_ok=True)
    path.write_text(page)
    print(f"\nwritten to {path}")


def update_rows(name, rows, note, path=DOCS):
    """Put a partial run's ``rows`` into the first table of the docs page's section ``name``: each replaces the
    row with the same first two cells (what, B), or goes after the last row with the same first cell (else at the
    table's end); ``note`` (what was re-measured, when, on what) replaces the section's "Re-measured" paragraph,
    written just before the table."""
    begin, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    page = path.read_text()
    start, stop = page.index(begin), page.index(end)
    lines = [line for line in page[start:stop].split("\n") if not line.startswith("Re-measured")]
    header = next(i for i, line in enumerate(lines) if line.startswith("| loss"))
    lines[header:header] = [note, ""]
    first = header + 4  # the note, a blank line, the header and its |---| line
    last = first
    while last < len(lines) and lines[last].startswith("|"):
        last += 1

    def key(line):
        return tuple(cell.strip() for cell in line.split("|")[1:3])

    for row in rows:
        keys = [key(line) for line in lines[first:last]]
        if key(row) in keys:
            lines[first + keys.index(key(row))] = row
            continue
        kin = [i for i, k in enumerate(keys) if k[0] == key(row)[0]]
        at = first + (kin[-1] + 1 if kin else len(keys))
        lines.insert(at, row)
        last += 1
    path.write_text(page[:start] + "\n".join(lines) + page[stop:])
    print(f"\nrows updated in {path}")
