"""A --prometheus URL with credentials that is down: the manifest's sources and missing reasons,
postmortem.md and every line the export prints name it masked (agent/redaction/url_credentials.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests import servers  # noqa: E402
from tests.evidence import telemetry_files as tf  # noqa: E402

BCGOV = str(ROOT / ".venv" / "bin" / "bcgov")
SECRET = "S3cret"


def test_a_down_source_with_credentials_is_named_masked_everywhere(tmp_path: Path) -> None:
    spans, logs = tf.write(tmp_path, time.time() - 60)
    closed = servers.free_port()
    out = tmp_path / "incident"
    res = subprocess.run([BCGOV, "evidence", "export", "--since", "2m", "--prometheus",
                          f"http://user:{SECRET}@127.0.0.1:{closed}", "--spans-file", str(spans), "--logs", str(logs),
                          "--retries", "0", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 3, res.stderr  # partial: prometheus is missing, the rest is written
    assert "missing" in res.stderr and SECRET not in res.stdout + res.stderr
    written = {p.name: p.read_text(errors="replace") for p in out.rglob("*") if p.is_file()}
    assert "MANIFEST.json" in written and "postmortem.md" in written
    assert "user:***@127.0.0.1" in written["MANIFEST.json"]
    assert not [name for name, text in written.items() if SECRET in text]
