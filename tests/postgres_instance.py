"""A PostgreSQL server of the test's own (initdb in a temporary folder, its own port), for
tests that stop it or end its connections: never the machine's shared server."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import IN_CI


def _binaries() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian's layout)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    return Path(found[-1]).parent if found else None


@dataclass
class Instance:
    """A running server: its folder, port, and the URL of its database `app`."""

    folder: Path
    port: int
    bin: Path

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/app"

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, *args: str) -> None:
        command = [str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), *args]
        subprocess.run(_as_postgres(command), check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg_ctl("-l", str(self.folder / "server.log"), "-o", options, "-w", "start")

    def stop(self) -> None:
        """A fast shutdown: sessions are ended, as when an operator stops the server."""
        self._pg_ctl("-m", "fast", "-w", "stop")


def _as_postgres(command: list[str]) -> list[str]:
    """initdb and the server refuse to run as root: as the postgres user then."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextmanager
def own_postgres() -> Iterator[Instance]:
    """A new server with an empty database `app`, removed afterwards."""
    binaries = _binaries()
    if binaries is None:
        message = "PostgreSQL's server binaries (initdb) are not installed"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    folder = Path(tempfile.mkdtemp(prefix="ma-own-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    instance = Instance(folder=folder, port=port, bin=binaries)
    initdb = [str(binaries / "initdb"), "-D", str(folder / "data"), "-A", "trust", "-U", "postgres"]
    subprocess.run(
        _as_postgres([*initdb, "--no-sync"]), check=True, capture_output=True, timeout=120
    )
    instance.start()
    try:
        subprocess.run(
            [
                str(binaries / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                "app",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        yield instance
    finally:
        subprocess.run(
            _as_postgres(
                [str(binaries / "pg_ctl"), "-D", str(folder / "data"), "-m", "immediate", "stop"]
            ),
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(folder, ignore_errors=True)
