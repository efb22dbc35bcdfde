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
    port: int, db: Path | None, workers: int, env_extra: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], list[str]]:
    """uvicorn with the SQLite store at `db` (None: no store), `env_extra` in its environment."""
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
    env = {**os.environ, "MODELROUTER_STORE": f"sqlite:///{db}" if db else "", **(env_extra or {})}
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


def run_httpx(
    url: str, seconds: int, connections: int, headers: dict[str, str] | None = None
) -> dict[str, float]:
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
        async with httpx.AsyncClient(
            limits=limits, timeout=TIMEOUT_S, headers=headers or {}
        ) as client:
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


# Authentication overhead: the same POST route on two servers started side by side, one open
# (no keys, loopback) and one with API keys, loaded in alternation so that both see the same
# machine; no store, so the route itself is as cheap as it gets and the overhead shows fully.
AUTH_KEYS = "; ".join(
    [f"client-{i} route {'k' * 8}-{i:04d}-{'x' * 24}" for i in range(4)]
    + ["ops admin bench-admin-key-0123456789abcdef"]
)
AUTH_HEADER = {"Authorization": f"Bearer {'k' * 8}-0003-{'x' * 24}"}


def auth_micro(n: int = 50_000, rounds: int = 7) -> float:
    """Microseconds ``ApiKeyAuth`` adds to one POST route request, in-process (5 keys, the
    client presenting the 4th): the middleware in front of an empty ASGI app against the
    empty app alone, in alternating blocks, median of the differences."""
    from modelrouter.server_auth import ApiKeyAuth, parse_api_keys

    class Route:
        path, methods, endpoint, openapi_extra = ROUTE, {"POST"}, None, {"x-role": "route"}

    async def bare(scope: dict, receive: object, send: object) -> None:
        return None

    auth = ApiKeyAuth(bare, keys=parse_api_keys(AUTH_KEYS), routes=lambda: [Route()])
    headers = [(b"host", b"127.0.0.1"), (b"user-agent", b"wrk"),
               (b"content-type", b"application/json"), (b"content-length", b"120"),
               (b"authorization", AUTH_HEADER["Authorization"].encode())]  # fmt: skip

    async def block(app: object) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            scope = {"type": "http", "path": ROUTE, "method": "POST", "headers": headers}
            await app(scope, None, None)  # type: ignore[operator]
        return (time.perf_counter() - t0) / n * 1e6

    async def main() -> float:
        diffs = []
        for i in range(rounds + 1):
            if i % 2:
                a = await block(bare)
                b = await block(auth)
            else:  # the other order every other round
                b = await block(auth)
                a = await block(bare)
            if i:  # block 0: warm-up
                diffs.append(b - a)
        return sorted(diffs)[len(diffs) // 2]

    return asyncio.run(main())


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children so far (Linux /proc): what a
    server spends, whatever else the machine is running."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


def bench_auth(args: argparse.Namespace, wrk: str | None) -> str:
    """Paired runs: in each round both servers are loaded in turn (the order alternating, so a
    drifting machine load favours neither); the overhead is the median of the rounds' ratios."""
    servers = {}
    results: dict[str, list[dict[str, float]]] = {"without keys": [], "with keys": []}
    try:
        for label, env in (
            ("without keys", {}),
            ("with keys", {"MODELROUTER_API_KEYS": AUTH_KEYS}),
        ):
            port = free_port()
            servers[label] = (start_server(port, None, 1, env)[0], port)
        labels = list(servers)
        for round_ in range(args.auth_rounds + 1):
            for label in labels if round_ % 2 == 0 else labels[::-1]:
                proc, port = servers[label]
                url = f"http://127.0.0.1:{port}{ROUTE}"
                headers = AUTH_HEADER if label == "with keys" else None
                seconds = 2 if round_ == 0 else args.auth_seconds  # round 0: warm-up
                cpu0 = cpu_seconds(proc.pid)
                r = (
                    run_wrk(wrk, url, seconds, args.auth_connections, headers=headers)
                    if wrk
                    else run_httpx(url, seconds, args.auth_connections, headers)
                )
                r["cpu_us"] = (cpu_seconds(proc.pid) - cpu0) / max(r["requests"], 1) * 1e6
                if r["non2xx"] or r["socket_errors"] or r["timeouts"]:
                    raise RuntimeError(f"{label}: not every request answered 2xx: {r}")
                if round_:
                    results[label].append(r)
    finally:
        for proc, _ in servers.values():
            stop_server(proc)

    def median(values: list[float]) -> float:
        values = sorted(values)
        mid = len(values) // 2
        return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2

    rps = {label: median([r["rps"] for r in rs]) for label, rs in results.items()}
    p50 = {label: median([r["p50"] for r in rs]) for label, rs in results.items()}
    ratios = [
        100.0 * (a["rps"] / b["rps"] - 1.0)
        for a, b in zip(results["without keys"], results["with keys"])
    ]
    cpu = {label: median([r["cpu_us"] for r in rs]) for label, rs in results.items()}
    middleware_us = auth_micro()
    lines = [
        "## REST service: authentication overhead",
        "",
        f"POST `{ROUTE}`, the seed `coder` agent, no store; with keys the service has 5 and the"
        " client presents the 4th (a `route` key) as `Authorization: Bearer`. In-process, the"
        f" auth middleware adds {middleware_us:.2f} µs per request (one SHA-256, five"
        " `compare_digest`, a dict lookup of the route's role; in front of an empty ASGI app,"
        " median of alternating blocks).",
        "",
        f"Over HTTP (1 uvicorn worker each, `wrk`, {args.auth_connections} connections"
        f" closed-loop, {args.auth_rounds} paired rounds of {args.auth_seconds} s, order"
        " alternating):",
        "",
        "| server | server CPU µs per request | requests/s | P50 ms |",
        "|---|---:|---:|---:|",
    ]
    for label in results:
        lines.append(f"| {label} | {cpu[label]:.1f} | {rps[label]:,.0f} | {p50[label]:.3f} |")
    cpu_ratios = [
        100.0 * (b["cpu_us"] / a["cpu_us"] - 1.0)
        for a, b in zip(results["without keys"], results["with keys"])
    ]
    expected = 100.0 * middleware_us / cpu["without keys"]
    lines += [
        "",
        f"The middleware's {middleware_us:.2f} µs against the open server's"
        f" {cpu['without keys']:.0f} µs of CPU per request: {expected:+.1f} % (target ≤ 5 %).",
        "",
        f"Measured, server CPU time per request with keys, median of the rounds' ratios:"
        f" {median(cpu_ratios):+.1f} % (rounds: {', '.join(f'{x:+.1f}' for x in cpu_ratios)};"
        " CPU time of the uvicorn process from /proc, which other load on the"
        " machine moves less than throughput). Throughput, median of the rounds' ratios: "
        f"{median(ratios):+.1f} % (rounds: {', '.join(f'{x:+.1f}' for x in ratios)}), at"
        " the mercy of whatever else the shared machine runs.",
    ]
    return "\n".join(lines) + "\n"


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
    parser.add_argument("--auth-rounds", type=int, default=10)
    parser.add_argument("--auth-seconds", type=int, default=3)
    parser.add_argument("--auth-connections", type=int, default=4)
    parser.add_argument("--auth-only", action="store_true", help="only the auth overhead runs")
    parser.add_argument("--no-auth", action="store_true", help="skip the auth overhead runs")
    args = parser.parse_args()
    if not 1 <= args.seconds <= 120:
        parser.error("--seconds must be in [1, 120]")
    wrk = ensure_wrk()
    if args.auth_only:
        print(bench_auth(args, wrk))
        return 0
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
    if not args.no_auth:
        print(bench_auth(args, wrk))  # printed only: its figure goes into README by hand
    if args.readme:
        write_readme(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
