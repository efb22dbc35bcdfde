"""POST /api/v1/model-router/route under load, over loopback, with the SQLite store enabled.

Starts ``uvicorn`` (1, then 2 workers; httptools and uvloop when installed) on a free
127.0.0.1 port with ``MODELROUTER_STORE`` pointing at a fresh SQLite file, drives it with
``wrk`` (a Lua script supplies the JSON body; installed with apt-get when missing and
possible) or, failing that, a bounded asyncio/httpx generator, and prints a ``## REST
service`` markdown section (``--readme`` also writes it into benches/README.md). Bounded: a
fixed duration per run, loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROUTE = "/api/v1/model-router/route"
BODY = {
    "agent": {
        "id": "coder",
        "required": {"code": 0.8},
        "preferred": {"reasoning": 1.0},
        "min_context": 8192,
    }
}
TARGET_RPS, TARGET_P99_MS = 5000.0, 10.0
TIMEOUT_S = 2  # per request, wrk and the httpx fallback alike


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_wrk() -> str | None:
    if shutil.which("wrk"):
        return shutil.which("wrk")
    if shutil.which("apt-get") and os.geteuid() == 0:
        install = ["apt-get", "install", "-y", "-qq", "wrk"]
        if subprocess.run(install, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
            subprocess.run(install, capture_output=True)
    return shutil.which("wrk")


def start_server(
    port: int, db: Path | None, workers: int
) -> tuple[subprocess.Popen[bytes], list[str]]:
    """uvicorn with the SQLite store at `db` (None: no store)."""
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "modelrouter.server:app_from_env"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    cmd += ["--log-level", "warning", "--no-access-log"]
    extras = []
    if importlib.util.find_spec("httptools"):
        cmd += ["--http", "httptools"]
        extras.append("httptools")
    if importlib.util.find_spec("uvloop"):
        cmd += ["--loop", "uvloop"]
        extras.append("uvloop")
    env = {**os.environ, "MODELROUTER_STORE": f"sqlite:///{db}" if db else ""}
    proc = subprocess.Popen(cmd, env=env)
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if bool(json.load(r)["store"]) == (db is not None):
                    return proc, extras
                raise RuntimeError("the service's store is not as asked")
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("uvicorn did not come up") from None
            time.sleep(0.2)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_wrk(
    wrk: str,
    url: str,
    seconds: int,
    connections: int,
    delay_ms: float = 0.0,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> dict[str, float]:
    """wrk POSTing ``body`` (default: the route body) as JSON; P50/P99 in ms, req/s, errors."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        if delay_ms > 0:  # paced: each connection pauses this long between requests
            f.write(f"function delay() return {int(delay_ms)} end\n")
        f.write('wrk.method = "POST"\n')
        f.write(f"wrk.body = {json.dumps(json.dumps(BODY if body is None else body))}\n")
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            f.write(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}\n")
    cmd = [wrk, "-t2", f"-c{connections}", f"-d{seconds}s", f"--timeout={TIMEOUT_S}s"]
    cmd += ["--latency", "-s", f.name, url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    os.unlink(f.name)

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            raise RuntimeError(f"no {label}% line in wrk's output:\n{out}")
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]

    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    # "Socket errors: connect 0, read 0, write 0, timeout 0" (printed only when one is > 0).
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    connect, read, write, timeout = (int(x) for x in errors.groups()) if errors else (0, 0, 0, 0)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50": ms("50"),
        "p99": ms("99"),
        "requests": float(total.group(1)) if total else 0.0,
        "non2xx": float(non2xx.group(1)) if non2xx else 0.0,
        "socket_errors": float(connect + read + write),
        "timeouts": float(timeout),
    }


def run_httpx(url: str, seconds: int, connections: int) -> dict[str, float]:
    import httpx

    latencies: list[float] = []
    bad = errors = timeouts = 0

    async def worker(client: httpx.AsyncClient, until: float) -> None:
        nonlocal bad, errors, timeouts
        while time.perf_counter() < until:
            t0 = time.perf_counter()
            try:
                r = await client.post(url, json=BODY)
            except httpx.TimeoutException:
                timeouts += 1
                continue
            except httpx.TransportError:
                errors += 1
                continue
            latencies.append((time.perf_counter() - t0) * 1000.0)
            bad += r.status_code != 200

    async def main() -> float:
        limits = httpx.Limits(max_connections=connections)
        async with httpx.AsyncClient(limits=limits, timeout=TIMEOUT_S) as client:
            start = time.perf_counter()
            until = start + seconds
            await asyncio.gather(*(worker(client, until) for _ in range(connections)))
            return time.perf_counter() - start

    elapsed = asyncio.run(main())
    latencies.sort()
    n = len(latencies)
    return {
        "rps": n / elapsed,
        "p50": latencies[n // 2] if n else float("nan"),
        "p99": latencies[min(n - 1, int(n * 0.99))] if n else float("nan"),
        "requests": float(n),
        "non2xx": float(bad),
        "socket_errors": float(errors),
        "timeouts": float(timeouts),
    }


def stored_routes(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("select count(*) from routing_decisions").fetchone()[0])


def target_met(r: dict[str, float]) -> bool:
    """Rate and P99 within the target, and every request answered with a 2xx: no non-2xx
    response, no socket error, no timeout."""
    clean = r["non2xx"] == 0 and r["socket_errors"] == 0 and r["timeouts"] == 0
    return r["rps"] >= TARGET_RPS and r["p99"] <= TARGET_P99_MS and clean


def section(
    rows: list[tuple[int, str, dict[str, float]]],
    stores: list[tuple[int, int, int]],
    info: dict[str, str],
) -> str:
    text = (
        f"`python benches/bench_service.py` (run by `make bench`): POST `{ROUTE}` with the seed "
        f"`coder` agent against the shipped `seed_assign` fleet, uvicorn{info['server']}, the "
        "SQLite decision store enabled (every decision written, batched; one store per worker "
        f"on the same file), load from {info['generator']} over loopback, client and server on "
        f"the same {info['cores']}-core machine (1-minute load average {info['load']} before "
        f"and {info['load_after']} after the runs). A fresh server and database per worker "
        f"count; a 2 s warm-up, then {info['seconds']} s per run; {TIMEOUT_S} s timeout per "
        "request. Closed-loop runs send the next request as soon as the answer arrives; paced "
        "runs pause each connection between requests (wrk's `delay()`). Target: ≥ "
        f"{TARGET_RPS:,.0f} req/s with P99 ≤ {TARGET_P99_MS:g} ms, and every request answered "
        "with a 2xx (no non-2xx, socket error or timeout); a run that misses any of these says "
        "no. Socket errors count wrk's connect, read and write errors."
    )
    lines = [
        "## REST service",
        "",
        textwrap.fill(text, width=100, break_on_hyphens=False),
        "",
        "| workers | load | requests/s | P50 ms | P99 ms | non-2xx | socket errors | timeouts "
        "| target met |",
        "|---:|---|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for workers, label, r in rows:
        lines.append(
            f"| {workers} | {label} | {r['rps']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | "
            f"{r['non2xx']:.0f} | {r['socket_errors']:.0f} | {r['timeouts']:.0f} | "
            f"{'yes' if target_met(r) else 'no'} |"
        )
    stored_text = (
        "Decisions stored against requests answered, per server (warm-up included; every "
        "answered route request, 2xx or not, writes one row; the server is stopped, which "
        "flushes its store, before the rows are counted). The load generator does not count "
        "requests still in flight when a run's time is up, so the server may have stored a "
        "few more rows than it reports answered:"
    )
    lines += [
        "",
        textwrap.fill(stored_text, width=100, break_on_hyphens=False),
        "",
        "| workers | requests answered | rows stored | stored − answered |",
        "|---:|---:|---:|---:|",
    ]
    for workers, answered, stored in stores:
        lines.append(f"| {workers} | {answered:,} | {stored:,} | {stored - answered:+,} |")
    return "\n".join(lines) + "\n"


def write_readme(text: str) -> None:
    readme = HERE / "README.md"
    old = readme.read_text()
    start = old.find("## REST service")
    if start >= 0:
        end = old.find("\n## ", start + 1)
        old = old[:start] + (old[end + 1 :] if end >= 0 else "")
    readme.write_text(old.rstrip("\n") + "\n\n" + text)


def bench_workers(
    workers: int, args: argparse.Namespace, wrk: str | None, tmp: Path
) -> tuple[list[tuple[int, str, dict[str, float]]], list[str], int, int]:
    """The rows of one server, its uvicorn extras, requests it answered (warm-up included) and
    rows in its store after it stopped."""
    port = free_port()
    url = f"http://127.0.0.1:{port}{ROUTE}"
    db = tmp / f"bench-{workers}.db"
    proc, extras = start_server(port, db, workers)
    rows = []
    try:

        def load(seconds: int, conns: int, delay_ms: int = 0) -> dict[str, float]:
            if wrk:
                return run_wrk(wrk, url, seconds, conns, delay_ms)
            return run_httpx(url, seconds, conns)

        warm = load(2, 8)
        answered = int(warm["requests"])
        for conns in args.connections:
            rows.append((workers, f"closed, {conns} connections", load(args.seconds, conns)))
        for spec in args.paced if wrk else []:
            conns, delay = (int(x) for x in spec.split(":"))
            label = f"paced, {conns} connections, {delay} ms pause"
            rows.append((workers, label, load(args.seconds, conns, delay)))
        answered += sum(int(r["requests"]) for _, _, r in rows)
    finally:
        stop_server(proc)
    return rows, extras, answered, stored_routes(db)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument(
        "--paced",
        nargs="*",
        default=["24:2"],
        metavar="CONNS:DELAY_MS",
        help="paced runs (wrk only): connections and pause between requests in ms",
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--readme", action="store_true", help="write the section into README")
    args = parser.parse_args()
    if not 1 <= args.seconds <= 120:
        parser.error("--seconds must be in [1, 120]")
    wrk = ensure_wrk()
    load_before = f"{os.getloadavg()[0]:.1f}"
    rows: list[tuple[int, str, dict[str, float]]] = []
    stores: list[tuple[int, int, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers in args.workers:
            more, extras, answered, stored = bench_workers(workers, args, wrk, Path(tmp))
            rows += more
            stores.append((workers, answered, stored))
    info = {
        "server": f" ({', '.join(extras)})" if extras else "",
        "generator": "`wrk -t2` (Lua script for the body)" if wrk else "an httpx generator",
        "seconds": str(args.seconds),
        "cores": str(os.cpu_count()),
        "load": load_before,
        "load_after": f"{os.getloadavg()[0]:.1f}",
    }
    text = section(rows, stores, info)
    print(text)
    if args.readme:
        write_readme(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
