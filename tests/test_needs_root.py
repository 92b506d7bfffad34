"""Without root, a test marked `ebpf` or `image` fails with the reason and the fix; it is never an
xfail or a skip, so `make test` cannot pass on a machine where the real-kernel tier did not run.

Runs pytest as the unprivileged user `nobody` (setpriv; when this suite itself is not root, as the
current user) on a throwaway directory holding a copy of the real tests/conftest.py and one test
of each marker.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
NOBODY = 65534

PROBE_TESTS = '''
import pytest

@pytest.mark.ebpf
def test_loads_a_probe():
    pass

@pytest.mark.image
def test_builds_the_image():
    pass

def test_needs_nothing():
    pass
'''

PYTEST_INI = """[pytest]
addopts = --strict-markers
markers =
    ebpf: needs root
    image: needs root
"""


@pytest.fixture
def probe_dir() -> Iterator[Path]:
    """A directory `nobody` can read: the real conftest, the three tests above and their markers."""
    directory = Path(tempfile.mkdtemp(prefix="bcgov-needs-root-"))
    try:
        directory.chmod(0o755)  # mkdtemp makes it 0700: nobody could not read the tests
        shutil.copy(TESTS / "conftest.py", directory / "conftest.py")
        (directory / "test_marked.py").write_text(PROBE_TESTS)
        (directory / "pytest.ini").write_text(PYTEST_INI)
        for f in directory.iterdir():
            f.chmod(0o644)
        yield directory
    finally:
        shutil.rmtree(directory)


def test_marked_tests_fail_without_root(probe_dir: Path) -> None:
    as_nobody = (["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
                 if os.geteuid() == 0 else [])
    result = subprocess.run(
        [*as_nobody, sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", str(probe_dir)],
        cwd=probe_dir, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(probe_dir), "COLUMNS": "250"},  # untruncated summary
    )
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "2 failed, 1 passed" in out, out
    assert "xfail" not in out and "skipped" not in out and "error" not in out.lower(), out
    for name, marker in (("test_loads_a_probe", "ebpf"), ("test_builds_the_image", "image")):
        assert (f"FAILED test_marked.py::{name} - Failed: marked {marker}: needs root for BPF, tracefs, cgroups "
                "and podman: run as root, e.g. sudo make test") in out, out
    assert "PASSED test_marked.py::test_needs_nothing" in out, out
