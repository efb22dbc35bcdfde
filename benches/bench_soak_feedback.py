"""Soak: 1M distinct agent ids through POST feedback, and the server's memory meanwhile.

Starts one ``uvicorn`` worker of the service on a free 127.0.0.1 port without a decision store
(with one, the store's bounded queue answers most of a flood like this with 503, so fewer ids
would reach the tracker), sends feedback under a new ``agent_id`` every request with ``wrk``
until 1,000,000 have been accepted (bounded: at most ``--max-seconds``), samples the worker's
RSS every 0.5 s, and prints a ``## Soak`` markdown section: requests, RSS at start / peak / end, the
budget, and the PerformanceTracker's evictions. Every agent id is new, so without the
``max_agents`` cap memory would grow with each request (once ~30 KB per id).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_service import ensure_wrk, free_port, start_server, stop_server  # noqa: E402

FEEDBACK = "/api/v1/model-router/feedback"
# The documented budget of the service process with the default cap (README, "Feedback").
BUDGET_MB = 300.0

LUA = r"""
-- `id` is a global that setup() gives each thread its own value of (a local would be shared
-- by every thread's copy of this chunk and repeat the ids).
local counter = 0
local threads = 0
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end
function request()
  counter = counter + 1
  local body = '{"model_id":"MODEL","latency_ms":12.5,"success":true,"agent_id":"soak-ROUND-'
    .. id .. '-' .. counter .. '"}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
"""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def model_id(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/model-router/stats") as r:
        return json.load(r)["models"][0]["model_id"]


def stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/model-router/stats") as r:
        return json.load(r)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ids", type=int, default=1_000_000)
    p.add_argument("--max-seconds", type=int, default=300)
    args = p.parse_args()
    wrk = ensure_wrk()
    if wrk is None:
        print("## Soak: distinct agent ids\n\nNot run: wrk is not installed.\n")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        proc, _ = start_server(port, None, 1)
        samples: list[float] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                samples.append(rss_mb(proc.pid))
                time.sleep(0.5)

        try:
            start_rss = rss_mb(proc.pid)
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            script = Path(tmp) / "soak.lua"
            model = model_id(port)
            url = f"http://127.0.0.1:{port}{FEEDBACK}"
            answered, non2xx, started = 0, 0, time.monotonic()
            # Chunks of 10 s; each wrk thread restarts its counter, so ids carry the round.
            rounds = 0
            while answered - non2xx < args.ids and time.monotonic() - started < args.max_seconds:
                script.write_text(LUA.replace("MODEL", model).replace("ROUND", str(rounds)))
                cmd = [wrk, "-t2", "-c16", "-d10s", "--timeout=2s", "-s", str(script), url]
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
                total = re.search(r"(\d+) requests in", out)
                bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
                answered += int(total.group(1)) if total else 0
                non2xx += int(bad.group(1)) if bad else 0
                rounds += 1
            elapsed = time.monotonic() - started
            s = stats(port)
        finally:
            stop.set()
            end_rss = rss_mb(proc.pid)
            stop_server(proc)
    peak = max(samples) if samples else float("nan")
    perf = s.get("performance", {})
    evicted = perf.get("evicted_agents", "not reported")
    tracked = perf.get("agents_tracked", "not reported")
    accepted = answered - non2xx
    met = "yes" if peak <= BUDGET_MB and accepted >= args.ids else "no"
    print(
        "## Soak: distinct agent ids through POST feedback\n\n"
        "One uvicorn worker without a decision store on 127.0.0.1, `wrk -t2 -c16` in 10 s "
        f"rounds, every request a new `agent_id`, for {elapsed:.0f} s. RSS of the worker sampled "
        "every 0.5 s.\n\n"
        "| feedback accepted (2xx) | non-2xx | RSS start | RSS peak | RSS end | budget | met |\n"
        "|---:|---:|---:|---:|---:|---:|---|\n"
        f"| {accepted:,} | {non2xx:,} | {start_rss:.0f} MB | {peak:.0f} MB | {end_rss:.0f} MB "
        f"| {BUDGET_MB:.0f} MB | {met} |\n\n"
        f"PerformanceTracker at the end (/stats): {tracked} agent ids tracked, {evicted} "
        "evicted (least recently seen first, cap `max_agents`).\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
