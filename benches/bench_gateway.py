"""What routing real traffic costs: the routed OpenAI SDK client against the plain one, and the
gateway (`modelrouter serve --upstreams`) against calling the upstream directly.

- SDK client: one thread, the fake upstream answering at once (latency 0), calls alternating
  between `openai.OpenAI` on the upstream and `modelrouter.openai.OpenAI` over a 4-model
  router (store off), N calls each after a warm-up; median and P99 per call, and the
  difference of the medians. Streams: time to first chunk, the same way.
- Gateway: uvicorn (1 worker, the default uvloop/httptools when installed, store off) in its
  own process in front of 4 deployments of the same fake upstream server (50 ± 10 ms); wrk
  POSTs a chat completion at a paced ~1,000 req/s (64 connections, each pausing between
  requests) to the gateway and, in the same run, straight to the upstream and through
  LiteLLM's proxy (`litellm --config`, 1 worker, same deployments); P50/P99 of each and the
  added time. Everything shares the 2 cores, the load generator included.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import openai

import modelrouter as mr
from modelrouter.openai import OpenAI as RoutedOpenAI
from modelrouter.testing.fake_upstream import FakeUpstreams

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_service import ensure_wrk, free_port, run_wrk  # noqa: E402

N = int(os.environ.get("BENCH_GATEWAY_CALLS", "2000"))
SECONDS = int(os.environ.get("BENCH_GATEWAY_S", "10"))
NAMES = ["u0", "u1", "u2", "u3"]
MESSAGES = [{"role": "user", "content": "hello"}]
BODY = {"model": "auto", "messages": MESSAGES, "max_tokens": 10}


def fleet() -> list[mr.Model]:
    return [mr.Model(n, {"chat": 0.9}, max_concurrent=256, max_queue=0) for n in NAMES]


def quantiles(xs: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(xs, n=100)
    return q[49], q[98]


def sdk_overhead(up: FakeUpstreams) -> list[tuple[str, float, float]]:
    plain = openai.OpenAI(base_url=up.base_url("u0"), api_key="x", max_retries=0)
    router = mr.Router(fleet())
    deployments = {n: {"base_url": up.base_url(n), "api_key": "x"} for n in NAMES}
    routed = RoutedOpenAI(router=router, deployments=deployments, agent=mr.Agent("a", {}))

    def one(create, stream: bool) -> float:
        t = time.perf_counter()
        if stream:
            it = iter(
                create(
                    model="auto" if create is routed_create else "m", messages=MESSAGES, stream=True
                )
            )
            next(it)
            elapsed = time.perf_counter() - t
            for _ in it:
                pass
            return elapsed * 1e3
        create(model="auto" if create is routed_create else "m", messages=MESSAGES)
        return (time.perf_counter() - t) * 1e3

    plain_create, routed_create = plain.chat.completions.create, routed.chat.completions.create
    rows = []
    for stream in (False, True):
        for _ in range(100):  # warm-up
            one(plain_create, stream)
            one(routed_create, stream)
        a, b = [], []
        for _ in range(N):
            a.append(one(plain_create, stream))
            b.append(one(routed_create, stream))
        what = "time to first chunk" if stream else "call"
        rows.append((f"`openai.OpenAI` {what}", *quantiles(a)))
        rows.append((f"`modelrouter.openai.OpenAI` {what}", *quantiles(b)))
    plain.close()
    routed.close()
    return rows


def start_gateway(upstreams_file: Path, port: int) -> subprocess.Popen[bytes]:
    code = (
        "import uvicorn, modelrouter as mr\n"
        "from modelrouter.server import create_app\n"
        f"names = {NAMES!r}\n"
        "models = [mr.Model(n, {'chat': 0.9}, max_concurrent=256, max_queue=0) for n in names]\n"
        f"app = create_app(models, upstreams={str(upstreams_file)!r})\n"
        f"uvicorn.run(app, host='127.0.0.1', port={port}, log_level='warning', access_log=False)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the gateway did not start")


def start_litellm_proxy(up: FakeUpstreams, tmp: Path) -> tuple[subprocess.Popen[bytes], int, str]:
    """LiteLLM's proxy (`litellm --config`, 1 worker) over the same 4 deployments under the
    model name "auto", so the same body works; its required master key is generated."""
    config = "model_list:\n" + "".join(
        f"  - model_name: auto\n    litellm_params:\n      model: openai/fake\n"
        f"      api_base: {up.base_url(n)}\n      api_key: x\n"
        for n in NAMES
    )
    (tmp / "litellm.yaml").write_text(config + "litellm_settings:\n  telemetry: false\n")
    key = "sk-" + os.urandom(24).hex()
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_MASTER_KEY": key}
    port = free_port()
    cmd = [str(Path(sys.executable).with_name("litellm")), "--config", str(tmp / "litellm.yaml")]
    cmd += ["--port", str(port), "--num_workers", "1"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health/liveliness", timeout=1)
            return proc, port, key
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("LiteLLM's proxy did not start")


def gateway_overhead(up: FakeUpstreams, wrk: str) -> list[tuple[str, dict[str, float]]]:
    spec = {
        "deployments": {n: {"base_url": up.base_url(n), "api_key": "x"} for n in NAMES},
        "agents": {"a": {"required": {}}},
        "default_agent": "a",
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upstreams.json"
        path.write_text(json.dumps(spec))
        port = free_port()
        procs = [start_gateway(path, port)]
        rows = []

        def measure(name: str, url: str, headers: dict[str, str]) -> None:
            # Paced: 64 connections, each pausing 14 ms between requests (~1,000 req/s at 50 ms).
            run_wrk(wrk, url, 2, 64, delay_ms=14, body=BODY, headers=headers)  # warm-up
            r = run_wrk(wrk, url, SECONDS, 64, delay_ms=14, body=BODY, headers=headers)
            rows.append((name, r))

        try:
            measure("upstream directly", f"{up.base_url('u0')}/chat/completions", {})
            measure("through the gateway", f"http://127.0.0.1:{port}/v1/chat/completions", {})
            procs[0].terminate()  # the proxy is measured alone
            procs[0].wait(timeout=30)
            try:
                proxy, proxy_port, key = start_litellm_proxy(up, Path(tmp))
            except (OSError, RuntimeError) as exc:
                print(f"LiteLLM's proxy left out: {exc}", file=sys.stderr)
            else:
                procs.append(proxy)
                url = f"http://127.0.0.1:{proxy_port}/v1/chat/completions"
                measure("through LiteLLM's proxy", url, {"Authorization": f"Bearer {key}"})
            return rows
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(timeout=30)


def main() -> int:
    lines = ["## Real traffic: routed SDK client and gateway overhead", ""]
    with FakeUpstreams({n: {"latency_ms": 0, "jitter_ms": 0} for n in NAMES}) as up:
        sdk = sdk_overhead(up)
    lines += [
        f"One thread, the fake upstream answering at once; {N:,} calls of each client, "
        "alternating, after 100 each of warm-up. *Added*: the routed client's median minus "
        "the plain client's, in the same run.",
        "",
        "| client | P50 ms | P99 ms | added (median) |",
        "|---|---:|---:|---:|",
    ]
    for i, (name, p50, p99) in enumerate(sdk):
        added = "" if i % 2 == 0 else f"{(p50 - sdk[i - 1][1]) * 1e3:+.0f} µs"
        lines.append(f"| {name} | {p50:.3f} | {p99:.3f} | {added} |")
    wrk = ensure_wrk()
    if wrk is None:
        lines += ["", "wrk is not installed: the gateway rows are left out."]
    else:
        with FakeUpstreams({n: {"latency_ms": 50, "jitter_ms": 10} for n in NAMES}) as up:
            gw = gateway_overhead(up, wrk)
        direct = gw[0][1]
        lines += [
            "",
            f"Gateway: wrk, 64 connections paced to about 1,000 req/s, {SECONDS} s per row, "
            "POST /v1/chat/completions (`model: auto`) against the fake upstream (50 ± 10 ms) "
            "directly, through the gateway (1 uvicorn worker, store off) and through LiteLLM's "
            "proxy (1 worker, same 4 deployments), same run. "
            "*Added*: the gateway's percentile minus the direct one.",
            "",
            "| target | req/s | P50 ms | P99 ms | added P50 ms | added P99 ms | errors |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, r in gw:
            extra = (
                ("", "")
                if r is direct
                else (f"{r['p50'] - direct['p50']:+.2f}", f"{r['p99'] - direct['p99']:+.2f}")
            )
            errors = int(r["non2xx"] + r["socket_errors"] + r["timeouts"])
            lines.append(
                f"| {name} | {r['rps']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {extra[0]} "
                f"| {extra[1]} | {errors} |"
            )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
