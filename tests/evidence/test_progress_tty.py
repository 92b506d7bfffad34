"""`bcgov evidence export` says what it is doing on a terminal (stderr a tty: a real pseudo-terminal
here), and nothing of the kind in a pipe or CI log."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.evidence import telemetry_files as tf  # noqa: E402

BCGOV = str(ROOT / ".venv" / "bin" / "bcgov")


def _export(tmp: Path, out: str, stderr: int) -> subprocess.Popen:
    spans, logs = tf.write(tmp, time.time() - 60)
    return subprocess.Popen([BCGOV, "evidence", "export", "--since", "2m", "--spans-file", str(spans), "--logs", str(logs),
                             "--out", str(tmp / out)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)


def test_progress_lines_on_a_terminal(tmp_path: Path) -> None:
    master, slave = pty.openpty()
    try:
        proc = _export(tmp_path, "b", slave)
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the last writer closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(timeout=120) == 0
    finally:
        os.close(master)
    text = b"".join(chunks).decode()
    for line in ("logs from ", "spans from ", "logs: 5 of 5 lines kept", "spans: 1 spans kept from 1 lines", "writing "):
        assert line in text, text


def test_no_progress_in_a_pipe(tmp_path: Path) -> None:
    proc = _export(tmp_path, "b", subprocess.PIPE)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert b"logs from" not in err and b"bundle written to" in err
