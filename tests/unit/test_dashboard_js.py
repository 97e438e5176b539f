"""The dashboard's pure script modules under node (no browser): the SSE reader gives the same events for
every way the stream is cut into chunks, and the chart's axis and date helpers."""

from __future__ import annotations

import json
import shutil
import subprocess
from importlib import resources
from typing import Any

JS = resources.files("dragonfly.api.dashboard") / "static" / "js"

_SSE = r"""
import { events } from "SSE";
const text = 'data: {"a":1}\n\n: comment\r\ndata: two\r\ndata: lines\r\n\r\ndata: [DONE]\n\ndata: tail';
const bytes = new TextEncoder().encode(text + " \u00e9");
const out = [];
for (let cut = 1; cut <= bytes.length; cut += 1) {
  const body = new ReadableStream({
    start(controller) {
      for (let i = 0; i < bytes.length; i += cut) controller.enqueue(bytes.slice(i, i + cut));
      controller.close();
    },
  });
  const got = [];
  for await (const data of events(new Response(body))) got.push(data);
  out.push(got);
}
console.log(JSON.stringify(out));
"""

_CHART = r"""
import { lastDays, niceMax } from "CHART";
console.log(JSON.stringify({
  nice: [0, 0.25, 1, 3, 7, 12, 0.000017].map(niceMax),
  days: lastDays(3, new Date(Date.UTC(2026, 0, 2, 23, 59))),
}));
"""


def _node(script: str) -> Any:
    node = shutil.which("node")
    assert node, "node is needed to run the dashboard's modules"
    source = script.replace('"SSE"', json.dumps(f"file://{JS / 'sse.js'}"))
    source = source.replace('"CHART"', json.dumps(f"file://{JS / 'chart.js'}"))
    done = subprocess.run(
        [node, "--input-type=module", "-e", source], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_sse_reader_gives_the_same_events_however_the_stream_is_cut() -> None:
    expected = ['{"a":1}', "two\nlines", "[DONE]", "tail \u00e9"]
    runs = _node(_SSE)
    assert runs and all(run == expected for run in runs)


def test_chart_axes_are_round_and_days_are_utc() -> None:
    out = _node(_CHART)
    assert out["nice"] == [1, 0.5, 1, 5, 10, 20, 0.00002]
    assert out["days"] == ["2025-12-31", "2026-01-01", "2026-01-02"]
