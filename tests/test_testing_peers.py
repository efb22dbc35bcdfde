"""modelrouter.testing starts its peers wherever the suite runs, root included."""

from __future__ import annotations

import os
import pwd

import pytest

from modelrouter.testing import postgres


@pytest.mark.skipif(os.geteuid() != 0, reason="the root path is only taken as root")
def test_postgres_starts_as_root_without_a_postgres_account(monkeypatch) -> None:
    psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed")
    real = pwd.getpwnam

    def no_postgres(name: str) -> pwd.struct_passwd:
        if name == "postgres":
            raise KeyError(name)
        return real(name)

    monkeypatch.setattr(pwd, "getpwnam", no_postgres)
    with postgres.cluster() as admin_url, psycopg.connect(admin_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert real(postgres.SERVER_USER).pw_uid != 0
