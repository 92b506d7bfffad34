"""A source that is down: the bundle is still written (as a .tar.gz here), the manifest records
the missing source with its reason, one clear message, exit 3; the tarball verifies."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests import servers  # noqa: E402
from tests.evidence import telemetry_files as tf  # noqa: E402

BCGOV = str(ROOT / ".venv" / "bin" / "bcgov")


def test_prometheus_down_gives_partial_bundle(tmp_path: Path) -> None:
    t0 = time.time() - 60
    spans, logs = tf.write(tmp_path, t0)
    closed = servers.free_port()  # nothing listens here once the probe socket closed
    out = tmp_path / "incident.tar.gz"
    # the agent's files named relative to the working directory, as a user types them
    res = subprocess.run([BCGOV, "evidence", "export", "--since", "2m", "--prometheus", f"http://127.0.0.1:{closed}",
                          "--spans-file", spans.name, "--logs", logs.name, "--retries", "0", "--out", str(out)],
                         capture_output=True, text=True, timeout=60, cwd=spans.parent)
    assert res.returncode == 3, res.stderr
    assert res.stderr.count("connection refused") == 1, res.stderr
    assert "partial bundle" in res.stderr
    with tarfile.open(out) as tar:
        names = {m.name for m in tar.getmembers()}
        mf = json.load(tar.extractfile("incident/MANIFEST.json"))  # type: ignore[arg-type]
        logs_out = tar.extractfile("incident/logs.jsonl").read().decode()  # type: ignore[union-attr]
    assert {"incident/logs.jsonl", "incident/spans.jsonl", "incident/timeline.md", "incident/postmortem.md"} <= names
    assert not any(n.startswith("incident/series/") for n in names)
    assert "connection refused" in mf["missing"]["prometheus"] and mf["complete"] is False
    assert "oom kill" in logs_out
    # trial 2: the manifest kept `logs.jsonl` as typed, which names nothing once the bundle moves
    assert mf["sources"]["logs"] == str(logs.resolve()) and mf["sources"]["spans"] == str(spans.resolve())
    ok = subprocess.run([BCGOV, "evidence", "verify", str(out)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr


def test_bad_window_is_a_usage_error(tmp_path: Path) -> None:
    res = subprocess.run([BCGOV, "evidence", "export", "--since", "yesterday", "--out", str(tmp_path / "b")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert "RFC 3339" in res.stderr
    assert not (tmp_path / "b").exists()
