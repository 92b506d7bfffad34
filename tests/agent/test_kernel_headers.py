"""The header fallback order (agent/kernel_headers.py) on fake trees: node, kheaders, bundled."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import kernel_headers as kh

RELEASE = "6.18.0-test"


def _where(tmp: Path) -> kh.Locations:
    return kh.Locations(release=RELEASE, modules_root=str(tmp / "modules"), kheaders=str(tmp / "kheaders.tar.xz"),
                        bundled=str(tmp / "bundle"))


def _node(tmp: Path) -> None:
    (tmp / "modules" / RELEASE / "build" / "include").mkdir(parents=True)


def _kheaders(tmp: Path) -> None:
    (tmp / "kheaders.tar.xz").write_bytes(b"\xfd7zXZ")


def _bundle(tmp: Path) -> None:
    (tmp / "bundle" / "include" / "linux").mkdir(parents=True)
    (tmp / "bundle" / "include" / "linux" / "kconfig.h").write_text("/* kconfig */\n")
    (tmp / "bundle" / "BCGOV_HEADERS_FROM").write_text("linux-headers-6.1.0-57-amd64\nlinux-headers-6.1.0-57-common\n")


@pytest.mark.parametrize(("present", "source"), [
    ((_node, _kheaders, _bundle), "node"),
    ((_node,), "node"),
    ((_kheaders, _bundle), "kheaders"),
    ((_bundle,), "bundled"),
])
def test_the_first_present_set_wins(tmp_path: Path, present: tuple, source: str) -> None:
    for make in present:
        make(tmp_path)
    choice = kh.choose(_where(tmp_path), environ={})
    assert choice.source == source
    assert choice.describe().startswith(f"{source} headers at ")


def test_bundled_says_why_and_from_which_packages_and_points_bcc_at_it(tmp_path: Path) -> None:
    _bundle(tmp_path)
    choice = kh.choose(_where(tmp_path), environ={})
    assert f"no headers at {tmp_path}/modules/{RELEASE}/build" in choice.why
    assert "linux-headers-6.1.0-57-amd64" in choice.why
    env: dict[str, str] = {}
    choice.apply(env)
    assert env == {kh.BCC_ENV: str(tmp_path / "bundle")}


def test_node_headers_leave_bccs_own_lookup_alone(tmp_path: Path) -> None:
    _node(tmp_path)
    env: dict[str, str] = {}
    kh.choose(_where(tmp_path), environ={}).apply(env)
    assert env == {}


def test_an_operators_bcc_kernel_source_wins_and_is_checked(tmp_path: Path) -> None:
    _node(tmp_path)
    _bundle(tmp_path)
    choice = kh.choose(_where(tmp_path), environ={kh.BCC_ENV: str(tmp_path / "bundle")})
    assert (choice.source, choice.path) == ("environment", str(tmp_path / "bundle"))
    with pytest.raises(kh.HeadersMissing, match=r"BCC_KERNEL_SOURCE=.*/nowhere holds no include/linux/kconfig.h"):
        kh.choose(_where(tmp_path), environ={kh.BCC_ENV: str(tmp_path / "nowhere")})


def test_a_bundle_without_kconfig_is_not_a_bundle(tmp_path: Path) -> None:
    (tmp_path / "bundle" / "include").mkdir(parents=True)  # e.g. an -amd64 tree alone: BCC fails on it
    with pytest.raises(kh.HeadersMissing) as err:
        kh.choose(_where(tmp_path), environ={})
    msg = str(err.value)
    assert "\n" not in msg
    for named in (f"modules/{RELEASE}/build", "kheaders.tar.xz", "bundle", "scripts/bootstrap.sh", "linux-headers-$(uname -r)"):
        assert named in msg
