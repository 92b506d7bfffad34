"""Signing MANIFEST.json with an SSH key, in the SSHSIG format `ssh-keygen -Y sign` writes.

The signature is `MANIFEST.json.sig` beside the manifest, namespace `bcgov-evidence`. Both sides
call OpenSSH's own `ssh-keygen` (package openssh-client), so what this module writes is exactly what
a reviewer checks with nothing but OpenSSH:

    ssh-keygen -Y verify -f allowed_signers -I <principal> -n bcgov-evidence \\
        -s MANIFEST.json.sig < MANIFEST.json

(`ssh-keygen -Y find-principals -s MANIFEST.json.sig -f allowed_signers` names the principal).
The manifest holds the sha256 of every other file, so a valid signature covers the whole bundle.
Format: https://github.com/openssh/openssh-portable/blob/master/PROTOCOL.sshsig
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

from governor.evidence.errors import BundleError, VerifyError

NAMESPACE = "bcgov-evidence"
SIG_NAME = "MANIFEST.json.sig"
_TIMEOUT = 300.0  # an encrypted key prompts on the terminal for its passphrase


def _ssh_keygen() -> str:
    exe = shutil.which("ssh-keygen")
    if exe is None:
        raise BundleError("ssh-keygen not found: install OpenSSH's client (apt-get install openssh-client) to sign or verify bundles")
    return exe


def _first_line(text: bytes) -> str:
    lines = [l.strip() for l in text.decode(errors="replace").splitlines() if l.strip()]
    return lines[-1] if lines else "no message"


def sign(data: bytes, key: Path) -> bytes:
    """The armored SSHSIG signature of `data` (the manifest's bytes) with private key `key`
    (or a public key whose private half is in ssh-agent). Raises BundleError naming the cause."""
    if not key.is_file():
        raise BundleError(f"--sign-key {key}: no such file; pass an SSH private key (ssh-keygen -t ed25519 -f KEY)")
    try:
        # An encrypted key: ssh-keygen asks for its passphrase on the terminal (/dev/tty, not our
        # pipes); with no terminal it fails with its own message, reported below.
        proc = subprocess.run([_ssh_keygen(), "-q", "-Y", "sign", "-f", str(key), "-n", NAMESPACE], input=data,
                              capture_output=True, timeout=_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise BundleError(f"ssh-keygen -Y sign with {key} did not finish in {_TIMEOUT:g} s (a passphrase prompt?); "
                          f"use an unencrypted key or load it into ssh-agent") from exc
    if proc.returncode != 0 or not proc.stdout.startswith(b"-----BEGIN SSH SIGNATURE-----"):
        raise BundleError(f"cannot sign with {key}: {_first_line(proc.stderr)}; pass an SSH private key readable by you "
                          f"(an encrypted one must be in ssh-agent)")
    return proc.stdout


def verify(data: bytes, signature: bytes, allowed_signers: Path) -> str:
    """The principal of `allowed_signers` whose key made `signature` over `data` in namespace
    bcgov-evidence. Raises VerifyError with one line naming the cause: a key not in the file, or a
    signature that does not match the data (the manifest changed after signing)."""
    if not allowed_signers.is_file():
        raise VerifyError(f"--allowed-signers {allowed_signers}: no such file; write one line "
                          f"'<principal> namespaces=\"{NAMESPACE}\" <public key>' per trusted signer")
    exe = _ssh_keygen()
    with tempfile.TemporaryDirectory(prefix="bcgov-verify-") as tmp:
        sig_file = Path(tmp) / SIG_NAME
        sig_file.write_bytes(signature)
        found = subprocess.run([exe, "-Y", "find-principals", "-s", str(sig_file), "-f", str(allowed_signers)],
                               capture_output=True, timeout=_TIMEOUT)
        principals = [p for p in found.stdout.decode(errors="replace").splitlines() if p.strip()]
        if found.returncode != 0 or not principals:
            fp = _fingerprint(signature)
            raise VerifyError(f"{SIG_NAME} was made by a key not in {allowed_signers}{fp}; "
                              f"the bundle was signed by someone you did not list as trusted")
        principal = principals[0]
        proc = subprocess.run([exe, "-Y", "verify", "-f", str(allowed_signers), "-I", principal, "-n", NAMESPACE,
                               "-s", str(sig_file)], input=data, capture_output=True, timeout=_TIMEOUT)
        if proc.returncode != 0:
            raise VerifyError(f"{SIG_NAME} does not match MANIFEST.json (signer {principal}): the manifest was changed "
                              f"after signing ({_first_line(proc.stderr or proc.stdout)})")
    return principal


def _fingerprint(signature: bytes) -> str:
    """` (key SHA256:...)` of the key inside an armored SSHSIG blob (PROTOCOL.sshsig: the magic
    "SSHSIG", a uint32 version, then the public key as an SSH string), as ssh-keygen -l prints it;
    "" when the blob is unreadable."""
    body = b"".join(l for l in signature.splitlines() if l and not l.startswith(b"-----"))
    try:
        blob = base64.b64decode(body, validate=True)
        if blob[:6] != b"SSHSIG":
            return ""
        (n,) = struct.unpack(">I", blob[10:14])
        key = blob[14:14 + n]
    except (ValueError, struct.error):
        return ""
    digest = base64.b64encode(hashlib.sha256(key).digest()).decode().rstrip("=")
    return f" (key SHA256:{digest})"
