"""Throwaway Redis servers for the shared-load tests and benchmarks: one redis-server, or a
3-node Redis Cluster, from Debian's packages on free loopback ports, with no persistence.

``REDIS``/``CLI`` are the binaries' paths, or None when they are not installed (``.ci/run``
installs redis-server, which brings redis-cli; elsewhere the tests skip).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

REDIS = shutil.which("redis-server")
CLI = shutil.which("redis-cli")


def free_ports(n: int) -> list[int]:
    """`n` distinct free loopback ports; each + 10000 (a Cluster node's bus port) also fits."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        ports = [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()
    return ports if all(p + 10000 <= 65535 for p in ports) else free_ports(n)


def _spawn(port: int, data_dir: str, *extra: str) -> subprocess.Popen[bytes]:
    assert REDIS is not None, "redis-server is not installed"
    cmd = [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    cmd += ["no", "--dir", data_dir, *extra]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def command(port: int, *args: str) -> str:
    """One command over a raw socket (no client library needed); the reply's first line."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            parts = [f"${len(a.encode())}\r\n{a}\r\n" for a in args]
            s.sendall(f"*{len(args)}\r\n{''.join(parts)}".encode())
            line = s.makefile("rb").readline().decode().strip()
    except OSError:
        return ""
    return line.lstrip("+:")


def command_calls(port: int, name: str) -> int:
    """How many times the server at `port` ran command `name` (`INFO commandstats`)."""
    assert CLI is not None, "redis-cli is not installed"
    cmd = [CLI, "-p", str(port), "INFO", "commandstats"]
    info = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
    for line in info.splitlines():
        if line.startswith(f"cmdstat_{name.lower()}:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def _wait(condition: object, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(what)
        time.sleep(0.05)


class RedisServer:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_ports(1)[0]
        self.dir = tempfile.mkdtemp(prefix="mr-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = _spawn(self.port, self.dir)
        try:
            _wait(lambda: self.cli("PING") == "PONG", "redis-server did not start", 10)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def cli(self, *args: str) -> str:
        return command(self.port, *args)

    def calls(self, name: str) -> int:
        return command_calls(self.port, name)


class Cluster:
    """Three masters, no replicas, all 16384 slots assigned (`redis-cli --cluster create`)."""

    def __init__(self) -> None:
        self.ports = free_ports(3)
        self.dir = tempfile.mkdtemp(prefix="mr-redis-cluster-")
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """Two of the three nodes: the client learns the third from the cluster itself."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports[:2])

    def start(self) -> Cluster:
        assert CLI is not None, "redis-cli is not installed"
        for p in self.ports:
            conf = ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{p}.conf"]
            self.procs.append(_spawn(p, self.dir, *conf))
        try:
            up = lambda: all(command(p, "PING") == "PONG" for p in self.ports)  # noqa: E731
            _wait(up, "redis-server did not start", 10)
            nodes = [f"127.0.0.1:{p}" for p in self.ports]
            create = [CLI, "--cluster", "create", *nodes, "--cluster-replicas", "0"]
            subprocess.run([*create, "--cluster-yes"], capture_output=True, timeout=30, check=True)
            ok = lambda: all(  # noqa: E731
                "cluster_state:ok" in self.cli("CLUSTER", "INFO", port=p) for p in self.ports
            )
            _wait(ok, "the cluster did not come up", 20)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(10)
        self.procs = []
        shutil.rmtree(self.dir, ignore_errors=True)

    def cli(self, *args: str, port: int | None = None) -> str:
        """redis-cli in cluster mode (follows MOVED): the whole reply."""
        assert CLI is not None, "redis-cli is not installed"
        cmd = [CLI, "-c", "-p", str(port or self.ports[0]), *args]
        out = subprocess.run(cmd, capture_output=True, timeout=10, check=False)
        return out.stdout.decode().strip()

    def calls(self, name: str) -> int:
        """Calls of command `name` summed over the nodes."""
        return sum(command_calls(p, name) for p in self.ports)

    def owner(self, key: str) -> int:
        """The port of the node that holds `key`'s slot."""
        slot = int(self.cli("CLUSTER", "KEYSLOT", key))
        for line in self.cli("CLUSTER", "NODES").splitlines():
            fields = line.split()
            port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
            for part in fields[8:]:
                lo, _, hi = part.partition("-")
                if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                    return port
        raise AssertionError(f"no node owns slot {slot}")

    def spread_models(self, prefix: str) -> list[str]:
        """One model per node: their `{mr:<model>}` hash tags land on three different nodes."""
        found: dict[int, str] = {}
        i = 0
        while len(found) < 3:
            model = f"{prefix}-{i}"
            found.setdefault(self.owner(f"{{mr:{model}}}:active"), model)
            i += 1
        return [found[p] for p in sorted(found)]

    def zcard(self, model: str) -> int:
        return int(self.cli("ZCARD", f"{{mr:{model}}}:active") or 0)


_Started = TypeVar("_Started", RedisServer, Cluster)


@contextmanager
def running(kind: type[_Started]) -> Iterator[_Started]:
    """A fresh server (or Cluster) for the block, stopped after it, also on error."""
    started = kind().start()
    try:
        yield started
    finally:
        started.stop()
