"""Signed bundles: `bcgov evidence export --sign-key` writes MANIFEST.json.sig in the SSHSIG format,
and the oracle is OpenSSH itself: `ssh-keygen -Y find-principals` and `ssh-keygen -Y verify` with an
allowed-signers file accept the bundle with nothing from this project. `bcgov evidence verify
--allowed-signers` accepts it too, and rejects each tampering case with one clear line: a changed
file, a changed (re-hashed) manifest, a key that is not trusted, a missing signature."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from governor.evidence import manifest, signing  # noqa: E402
from tests.evidence import telemetry_files as tf  # noqa: E402

BCGOV = str(ROOT / ".venv" / "bin" / "bcgov")
PRINCIPAL = "incident-lead@example.org"

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs OpenSSH's ssh-keygen (openssh-client)")


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(list(args), input=stdin, capture_output=True, timeout=120)


def keypair(dir_: Path, name: str, passphrase: str = "") -> Path:
    key = dir_ / name
    res = run("ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", name, "-f", str(key))
    assert res.returncode == 0, res.stderr
    return key


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("signed")
    keys = tmp / "keys"
    keys.mkdir()
    key, other = keypair(keys, "lead"), keypair(keys, "stranger")
    allowed = keys / "allowed_signers"
    allowed.write_text(f'{PRINCIPAL} namespaces="{signing.NAMESPACE}" {(keys / "lead.pub").read_text().strip()}\n')
    t0 = time.time() - 30
    spans, logs = tf.write(tmp, t0)
    out: dict[str, Path] = {"key": key, "other": other, "allowed": allowed, "spans": spans, "logs": logs}
    for name in ("bundle", "bundle.tar.gz"):
        res = run(BCGOV, "evidence", "export", "--since", "2m", "--namespace", "payments", "--spans-file", str(spans),
                  "--logs", str(logs), "--sign-key", str(key), "--out", str(tmp / name))
        assert res.returncode == 0, res.stderr.decode()
        out[name] = tmp / name
    return out


def ssh_verify(allowed: Path, manifest_bytes: bytes, sig: Path) -> subprocess.CompletedProcess[bytes]:
    """What a reviewer runs: find the principal, then verify the manifest's bytes."""
    found = run("ssh-keygen", "-Y", "find-principals", "-s", str(sig), "-f", str(allowed))
    if found.returncode != 0:
        return found
    principal = found.stdout.decode().split()[0]
    return run("ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", principal, "-n", signing.NAMESPACE,
               "-s", str(sig), stdin=manifest_bytes)


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def verify(bundle: Path, allowed: Path | None) -> subprocess.CompletedProcess[str]:
    extra = ["--allowed-signers", str(allowed)] if allowed else []
    return subprocess.run([BCGOV, "evidence", "verify", str(bundle), *extra], capture_output=True, text=True, timeout=120)


def test_plain_ssh_keygen_verifies_the_directory_bundle(signed: dict[str, Path]) -> None:
    b = signed["bundle"]
    assert (b / signing.SIG_NAME).read_bytes().startswith(b"-----BEGIN SSH SIGNATURE-----")
    res = ssh_verify(signed["allowed"], (b / manifest.NAME).read_bytes(), b / signing.SIG_NAME)
    assert res.returncode == 0, res.stderr
    assert f'Good "{signing.NAMESPACE}" signature for {PRINCIPAL}' in (res.stdout + res.stderr).decode()
    mf = json.loads((b / manifest.NAME).read_bytes())
    assert mf["signature"]["namespace"] == signing.NAMESPACE and signing.SIG_NAME not in mf["files"]


def test_plain_ssh_keygen_verifies_the_tarball(signed: dict[str, Path], tmp_path: Path) -> None:
    with tarfile.open(signed["bundle.tar.gz"]) as tar:
        mf = tar.extractfile(f"bundle/{manifest.NAME}").read()  # type: ignore[union-attr]
        sig = tar.extractfile(f"bundle/{signing.SIG_NAME}").read()  # type: ignore[union-attr]
    (tmp_path / "s.sig").write_bytes(sig)
    assert ssh_verify(signed["allowed"], mf, tmp_path / "s.sig").returncode == 0


@pytest.mark.parametrize("name", ["bundle", "bundle.tar.gz"])
def test_bcgov_verify_names_the_signer(signed: dict[str, Path], name: str) -> None:
    res = verify(signed[name], signed["allowed"])
    assert res.returncode == 0, res.stderr
    assert f"signed by {PRINCIPAL}" in res.stdout


def test_a_changed_file_fails(signed: dict[str, Path], tmp_path: Path) -> None:
    b = copy(signed["bundle"], tmp_path / "b")
    logs = b / "logs.jsonl"
    logs.write_bytes(logs.read_bytes().replace(b"ledger", b"LEDGER", 1))
    res = verify(b, signed["allowed"])
    assert res.returncode == 1
    # one line for one changed file (trial 2: two lines, the file's under the heading `changed:`)
    assert res.stderr.splitlines() == [f"bcgov: error: {b} does not match its manifest: logs.jsonl: changed (sha256 mismatch)"]


def test_a_rewritten_manifest_fails_here_and_in_ssh_keygen(signed: dict[str, Path], tmp_path: Path) -> None:
    """The forger edits a file and writes its new sha256 into the manifest: every sum matches, the
    signature does not."""
    b = copy(signed["bundle"], tmp_path / "b")
    logs = b / "logs.jsonl"
    logs.write_bytes(logs.read_bytes().replace(b"ledger", b"LEDGER", 1))
    mf = json.loads((b / manifest.NAME).read_bytes())
    mf["files"]["logs.jsonl"] = {"sha256": manifest.sha256(logs.read_bytes()), "size": logs.stat().st_size}
    (b / manifest.NAME).write_bytes(manifest.encode(mf))
    assert verify(b, None).returncode == 0  # sums alone cannot tell
    res = verify(b, signed["allowed"])
    assert res.returncode == 1
    (line,) = res.stderr.strip().splitlines()
    assert f"{signing.SIG_NAME} does not match MANIFEST.json (signer {PRINCIPAL})" in line
    assert ssh_verify(signed["allowed"], (b / manifest.NAME).read_bytes(), b / signing.SIG_NAME).returncode != 0


def test_a_key_not_in_allowed_signers_fails(signed: dict[str, Path], tmp_path: Path) -> None:
    b = copy(signed["bundle"], tmp_path / "b")
    (b / signing.SIG_NAME).write_bytes(signing.sign((b / manifest.NAME).read_bytes(), signed["other"]))
    res = verify(b, signed["allowed"])
    assert res.returncode == 1
    (line,) = res.stderr.strip().splitlines()
    fp = run("ssh-keygen", "-lf", str(signed["other"]) + ".pub").stdout.decode().split()[1]
    assert f"made by a key not in {signed['allowed']} (key {fp})" in line
    assert ssh_verify(signed["allowed"], (b / manifest.NAME).read_bytes(), b / signing.SIG_NAME).returncode != 0


def test_a_missing_signature_fails(signed: dict[str, Path], tmp_path: Path) -> None:
    b = copy(signed["bundle"], tmp_path / "b")
    (b / signing.SIG_NAME).unlink()
    res = verify(b, signed["allowed"])
    assert res.returncode == 1
    (line,) = res.stderr.strip().splitlines()
    assert "has no MANIFEST.json.sig: the bundle is unsigned" in line
    assert verify(b, None).returncode == 0  # without --allowed-signers an unsigned bundle only has its sums checked


def test_verify_without_allowed_signers_says_the_signature_was_not_checked(signed: dict[str, Path]) -> None:
    res = verify(signed["bundle"], None)
    assert res.returncode == 0 and "signature not checked" in res.stdout


@pytest.mark.parametrize("case", ["no such key", "encrypted key without a terminal"])
def test_a_key_that_cannot_sign_is_one_line_and_leaves_nothing(signed: dict[str, Path], tmp_path: Path, case: str) -> None:
    key = tmp_path / "nope" if case == "no such key" else keypair(tmp_path, "locked", passphrase="correct horse")
    out = tmp_path / "b"
    res = subprocess.run([BCGOV, "evidence", "export", "--since", "2m", "--logs", str(signed["logs"]), "--sign-key", str(key),
                          "--out", str(out)], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                         start_new_session=True)  # no controlling terminal: ssh-keygen cannot prompt
    assert res.returncode == 2
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("bcgov: error: ") and str(key) in line
    assert not out.exists() and not list(tmp_path.glob(".b.part*"))
