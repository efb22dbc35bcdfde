"""A throwaway PostgreSQL cluster from the Debian server packages, on a free loopback port in a
temporary directory, and fresh databases on it: what the decision-store tests and benchmarks
run against.

``.ci/run`` installs the packages; without them :func:`cluster` raises :class:`Unavailable`
(the tests then skip with its message unless ``MODELROUTER_TEST_POSTGRES_URL`` names a server
where the user may create databases). :func:`database` needs ``psycopg``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit


class Unavailable(Exception):
    """No server can be started here; the message says why."""


def _bindir() -> str:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(initdb)
    raise Unavailable(
        "no PostgreSQL server binaries (apt-get install postgresql), and "
        "MODELROUTER_TEST_POSTGRES_URL is not set"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVER_USER = "modelrouter-pg"


def _server_user() -> pwd.struct_passwd:
    """The unprivileged account the server runs under when we are root (PostgreSQL refuses
    root): Debian's ``postgres``, else a system account of our own, created once."""
    for name in ("postgres", SERVER_USER):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    useradd = shutil.which("useradd")
    if useradd is None:
        raise Unavailable("running as root with no postgres user, and useradd is missing")
    nologin = shutil.which("nologin") or "/bin/false"
    made = subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", nologin, SERVER_USER],
        capture_output=True,
        text=True,
    )
    if made.returncode not in (0, 9):  # 9: someone else created it meanwhile
        raise Unavailable(f"could not create the {SERVER_USER} account: {made.stderr.strip()}")
    return pwd.getpwnam(SERVER_USER)


@contextmanager
def cluster(fsync: bool = False) -> Iterator[str]:
    """Starts a cluster in a temporary directory on a free loopback port and yields an admin
    URL. The server refuses to run as root, so under root it runs as the ``postgres`` user, or
    an unprivileged account created for it.
    Tests run it with ``fsync=off`` (durability against the server host crashing is not what
    they check); benchmarks keep it on."""
    bindir = _bindir()
    prefix: list[str] = []
    base = tempfile.mkdtemp(prefix="modelrouter-pg-")
    try:
        if os.geteuid() == 0:
            pw = _server_user()
            os.chown(base, pw.pw_uid, pw.pw_gid)
            runuser = shutil.which("runuser")
            if runuser is None:
                raise Unavailable("running as root and runuser is missing")
            prefix = [runuser, "-u", pw.pw_name, "--"]
        data, port = os.path.join(base, "data"), _free_port()
        subprocess.run(
            [*prefix, f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "postgres", "-N"],
            check=True,
            capture_output=True,
        )
        options = (
            f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync={'on' if fsync else 'off'}"
        )
        subprocess.run(
            [*prefix, f"{bindir}/pg_ctl", "-D", data, "-l", f"{base}/log", "-w", "-o", options]
            + ["start"],
            check=True,
            capture_output=True,
        )
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run(
                [*prefix, f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"],
                capture_output=True,
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def database(admin_url: str) -> Iterator[str]:
    """A fresh database on the server, dropped afterwards; yields its URL."""
    import psycopg

    name = f"modelrouter_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(admin_url)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
