"""Profile Dragonfly's data-plane worker under Locust load with py-spy: a speedscope file, the collapsed
stacks, and a text table of the hottest functions (self time and inclusive time).

    python -m benchmarks.load profile --scenario chat --duration 15
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.load import services, targets
from benchmarks.load.harness import run_locust
from benchmarks.load.targets import Target


def _worker_pid(df: Target) -> int:
    """The Granian worker process (the one running the RSGI app), the busiest in the tree's leaves."""
    pids = services.tree(df.roots[0])
    workers = []
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"granian" in cmd:
            workers.append(pid)
    if not workers:
        raise RuntimeError("no Granian process found under dragonfly serve")
    # Granian's main process supervises; its child is the worker. Take the deepest (last started).
    return max(workers)


def top_functions(collapsed: Path, n: int = 15) -> tuple[str, int]:
    """Text tables of the hottest frames by self samples and by inclusive samples."""
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_s)
        total += count
        frames = stack.split(";")
        self_c[_short(frames[-1])] += count
        for f in {_short(f) for f in frames}:
            incl[f] += count
    if not total:
        return "no samples", 0
    lines = [f"{total} samples", "", f"top {n} by self time:", ""]
    lines += [f"{c / total:6.1%}  {f}" for f, c in self_c.most_common(n)]
    lines += ["", f"top {n} Dragonfly/aiohttp/asyncio functions by inclusive time:", ""]
    keep = ("dragonfly/", "aiohttp/", "asyncio/")
    shown = [(f, c) for f, c in incl.most_common() if any(k in f for k in keep)][:n]
    lines += [f"{c / total:6.1%}  {f}" for f, c in shown]
    return "\n".join(lines), total


def _short(frame: str) -> str:
    # py-spy raw frames look like `function (path/to/file.py:123)`; keep the function, file and line.
    func, _, loc = frame.partition(" (")
    loc = loc.rstrip(")")
    for marker in ("/site-packages/", "/python/", "/lib/python3.11/"):
        if marker in loc:
            loc = loc.split(marker, 1)[1]
            break
    return f"{func} ({loc})" if loc else func


def profile(
    *, scenario: str, duration_s: float, users: int, rate_hz: int, out_dir: Path, gil: bool = True
) -> dict[str, Any]:
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(pyspy).exists():
        raise RuntimeError("py-spy not installed: pip install py-spy (scripts/bench-deps.sh)")
    services.raise_fd_limit()
    run_dir = out_dir / f"profile-{time.strftime('%Y%m%d-%H%M%S')}"
    log_dir = run_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    seller = targets.start_fake_seller(log_dir)
    df: Target | None = None
    try:
        df = targets.start_embedded(log_dir, seller)
        pid = _worker_pid(df)
        raw = run_dir / "worker.collapsed.txt"
        speedscope = run_dir / "worker.speedscope.json"
        spy_s = max(3, int(duration_s) - 2)

        def record(fmt: str, path: Path) -> None:
            subprocess.run(
                [
                    pyspy,
                    "record",
                    "-p",
                    str(pid),
                    "-d",
                    str(spy_s),
                    "-r",
                    str(rate_hz),
                    "-f",
                    fmt,
                    "-o",
                    str(path),
                ]
                + ["--nonblocking"]
                + (["--gil"] if gil else []),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=spy_s + 60,
                check=False,
            )

        # Two recorders at once would double the sampling cost: raw (for the table) now, speedscope from it.
        spy = threading.Thread(target=record, args=("raw", raw))
        time.sleep(0.1)
        load: dict[str, Any] = {}

        def run_load() -> None:
            load["run"] = run_locust(
                df, scenario, users=users, duration_s=duration_s, out_dir=run_dir, tag=f"profile-{scenario}"
            )

        loader = threading.Thread(target=run_load)
        loader.start()
        time.sleep(2.5)  # Locust's start-up and ramp
        spy.start()
        spy.join()
        loader.join()
        record_summary = load["run"].summary() if "run" in load else {}
        table, samples = top_functions(raw) if raw.exists() else ("py-spy wrote nothing", 0)
        _collapsed_to_speedscope(raw, speedscope)
        gil_note = " --gil (samples of the thread holding the GIL)" if gil else ""
        text = (
            f"py-spy {rate_hz} Hz{gil_note} on the Granian worker (pid {pid}) for {spy_s}s "
            f"under Locust {scenario} load, "
            f"{users} users: {record_summary.get('rps', float('nan')):.0f} req/s, "
            f"{record_summary.get('cpu_us_per_req', float('nan')):.0f} µs CPU/request (whole serve tree)\n\n"
            + table
        )
        (run_dir / "top.txt").write_text(text)
        print(text)
        print(f"\nfiles: {raw}, {speedscope}")
        return {"summary": record_summary, "top": text, "samples": samples}
    finally:
        if df is not None:
            df.stop()
        seller.stop()


def _collapsed_to_speedscope(collapsed: Path, out: Path) -> None:
    """Speedscope's 'sampled' profile from py-spy's collapsed stacks (one recorder, two outputs)."""
    import json

    if not collapsed.exists():
        return
    frames: list[dict[str, str]] = []
    index: dict[str, int] = {}
    samples: list[list[int]] = []
    weights: list[int] = []
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack:
            continue
        ids = []
        for f in stack.split(";"):
            if f not in index:
                index[f] = len(frames)
                frames.append({"name": f})
            ids.append(index[f])
        samples.append(ids)
        weights.append(int(count_s))
    doc = {
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "shared": {"frames": frames},
        "profiles": [
            {
                "type": "sampled",
                "name": "dragonfly data-plane worker",
                "unit": "none",
                "startValue": 0,
                "endValue": sum(weights),
                "samples": samples,
                "weights": weights,
            }
        ],
    }
    out.write_text(json.dumps(doc))
