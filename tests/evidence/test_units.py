"""Pure units: time parsing and steps, scope matchers, alert firing periods, redaction, manifest."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from governor.evidence import alerts, manifest, redaction, scope, timewindow  # noqa: E402
from governor.evidence.errors import VerifyError, WindowError  # noqa: E402

NOW = 1_800_000_000.0


@pytest.mark.parametrize("text,want", [
    ("now", NOW), ("2h", NOW - 7200), ("30m", NOW - 1800), ("90s", NOW - 90), ("1.5d", NOW - 129600),
    ("2027-01-15T08:00:00Z", 1_800_000_000.0), ("2027-01-15T10:00:00.123456789+02:00", 1_800_000_000.123456),
])
def test_parse_time(text: str, want: float) -> None:
    assert timewindow.parse_time(text, NOW) == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("bad", ["yesterday", "2h30", "2027-01-15T08:00:00", "-5m", ""])
def test_parse_time_rejects(bad: str) -> None:
    with pytest.raises(WindowError):
        timewindow.parse_time(bad, NOW)


@pytest.mark.parametrize("seconds,step", [(60, 1), (600, 1), (601, 2), (3600, 10), (7200, 15), (86400, 300), (7 * 86400, 1800)])
def test_choose_step(seconds: float, step: int) -> None:
    assert timewindow.choose_step(seconds) == step
    assert seconds / step <= timewindow.MAX_POINTS


def test_window_must_move_forward() -> None:
    with pytest.raises(WindowError, match="must be after"):
        timewindow.Window.parse("now", "1h", NOW)


@pytest.mark.parametrize("sc,only,want", [
    (scope.Scope(), None, "{}"),
    (scope.Scope(tier="gold", namespace="pay"), None, '{tier="gold",namespace="pay"}'),
    (scope.Scope(tier="gold", namespace="pay", pod="a-0"), ("tier",), '{tier="gold"}'),
    (scope.Scope(namespace='we"ird'), None, '{namespace="we\\"ird"}'),
])
def test_scope_matchers(sc: scope.Scope, only: tuple[str, ...] | None, want: str) -> None:
    assert sc.matchers(only) == want


def test_scope_matches_attributes() -> None:
    sc = scope.Scope(namespace="pay")
    assert sc.matches({"k8s.namespace.name": "pay"})
    assert not sc.matches({"k8s.namespace.name": "other"})
    assert not sc.matches({})
    assert scope.Scope().matches({})


@pytest.mark.parametrize("times,step,want", [
    ([], 15, []),
    ([0, 15, 30], 15, [(0, 30)]),
    ([0, 15, 60, 75], 15, [(0, 15), (60, 75)]),
])
def test_firing_periods(times: list[float], step: int, want: list[tuple[float, float]]) -> None:
    assert alerts.firing_periods(times, step) == want


def test_alert_scope_keeps_platform_alerts() -> None:
    sc = scope.Scope(namespace="pay")
    assert alerts.in_scope({"alertname": "X"}, sc)
    assert alerts.in_scope({"namespace": "pay"}, sc)
    assert not alerts.in_scope({"namespace": "other"}, sc)


def test_redaction_of_argv_urls_and_key_values() -> None:
    rec = {"attributes": {"process.command_args": ["app", "--password", "hunter2", "--token=abc123"],
                          "url.full": "https://u:pw123@h/x", "env": "DB_PASSWORD=zz9"}}
    text = str(redaction.redact_value(rec))
    for secret in ("hunter2", "abc123", "pw123", "zz9"):
        assert secret not in text


def test_manifest_detects_change_missing_and_extra(tmp_path: Path) -> None:
    files = {"a.txt": b"alpha", "d/b.csv": b"beta"}
    mf = manifest.build(files, {"tool": "t"})
    (tmp_path / "d").mkdir()
    (tmp_path / "a.txt").write_bytes(b"alpha")
    (tmp_path / "d/b.csv").write_bytes(b"beta")
    import json
    (tmp_path / manifest.NAME).write_text(json.dumps(mf))
    assert manifest.verify(tmp_path) == []
    (tmp_path / "a.txt").write_bytes(b"alphA")
    (tmp_path / "extra").write_bytes(b"")
    (tmp_path / "d/b.csv").unlink()
    assert manifest.verify(tmp_path) == ["a.txt: changed (sha256 mismatch)", "d/b.csv: missing", "extra: added (not in the manifest)"]
    (tmp_path / manifest.NAME).unlink()
    with pytest.raises(VerifyError, match="no MANIFEST.json"):
        manifest.verify(tmp_path)


def _bundle_dir(tmp_path: Path) -> Path:
    import json
    b = tmp_path / "bundle"
    (b / "d").mkdir(parents=True)
    files = {"a.txt": b"alpha", "d/b.csv": b"beta"}
    for name, data in files.items():
        (b / name).write_bytes(data)
    (b / manifest.NAME).write_text(json.dumps(manifest.build(files, {"tool": "t"})))
    return b


def test_a_tarball_with_an_unsafe_entry_still_finds_its_manifest_and_names_the_entry(tmp_path: Path) -> None:
    """Trial 2: a bundle with an added ../../../ entry was reported as having no MANIFEST.json."""
    import io
    import tarfile
    b = _bundle_dir(tmp_path)
    tgz = tmp_path / "b.tar.gz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(b, arcname="bundle")
        info = tarfile.TarInfo("../../../etc/cron.d/x")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    assert manifest.verify(tgz) == ["../../../etc/cron.d/x: added, an unsafe path (absolute or with ..) that no bundle holds"]


def test_a_file_replaced_by_a_symbolic_link_is_named_as_one(tmp_path: Path) -> None:
    """Trial 2: a symlinked file was reported only as `missing`."""
    b = _bundle_dir(tmp_path)
    (tmp_path / "elsewhere").write_bytes(b"alpha")
    (b / "a.txt").unlink()
    (b / "a.txt").symlink_to(tmp_path / "elsewhere")
    (b / "link").symlink_to(tmp_path / "elsewhere")
    assert manifest.verify(b) == ["a.txt: replaced by a symbolic link, not a regular file (a bundle holds regular files only)",
                                  "link: added, a symbolic link, not a regular file (a bundle holds regular files only)"]
