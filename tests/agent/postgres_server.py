"""A real PostgreSQL 15 (Debian's postgresql-15) for the agent tests: initdb into a temporary
directory, serving on one loopback port, run as the ``postgres`` user (PostgreSQL refuses root),
optionally inside a given cgroup. Stopped and removed even when the test fails."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def as_postgres(argv: list[str]) -> list[str]:
    """``argv`` run as the postgres user (setpriv: no PAM session that could move the cgroup)."""
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *argv]


@contextlib.contextmanager
def postgres(port: int, enter_cgroup: Callable[[], None] | None = None) -> Iterator[Path]:
    """A PostgreSQL server on 127.0.0.1:``port`` (trust auth, user postgres); yields its socket dir."""
    if not (PG_BIN / "initdb").exists():
        raise RuntimeError("PostgreSQL 15 is missing: scripts/bootstrap.sh installs postgresql-15 (run 'sudo make test')")
    # Not under pytest's tmp_path: that is root-only (0700) and postgres could not enter it.
    base = Path(tempfile.mkdtemp(prefix="bcgov-pg-"))
    os.chmod(base, 0o755)
    user = pwd.getpwnam("postgres")
    os.chown(base, user.pw_uid, user.pw_gid)
    data, log = base / "data", base / "server.log"
    started = False
    try:
        subprocess.run(as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                                    "--no-sync", "--no-instructions"]), check=True, capture_output=True, timeout=120)
        opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
        subprocess.run(as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(log), "-w",
                                    "-t", "60", "start"]),
                       check=True, capture_output=True, timeout=90, preexec_fn=enter_cgroup)
        started = True
        yield base
    except subprocess.CalledProcessError as e:
        tail = log.read_text()[-2000:] if log.exists() else ""
        raise RuntimeError(f"PostgreSQL did not start: {e.stderr!r}\n{tail}") from e
    finally:
        if started:
            subprocess.run(as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                           capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


def pgbench(port: int, args: list[str], enter_cgroup: Callable[[], None] | None = None) -> str:
    """Run Debian's pgbench against the server (as postgres, over TCP); returns its output."""
    argv = as_postgres([str(PG_BIN / "pgbench"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", *args, "postgres"])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, preexec_fn=enter_cgroup)
    if done.returncode != 0:
        raise RuntimeError(f"pgbench {' '.join(args)} failed: {done.stderr}")
    return done.stdout
