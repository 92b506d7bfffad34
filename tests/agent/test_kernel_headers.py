"""The header fallback order (agent/kernel/headers.py) on fake trees: node, kheaders, bundled."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.kernel import headers as kh

RELEASE = "6.18.0-test"


def _where(tmp: Path) -> kh.Locations:
    return kh.Locations(release=RELEASE, modules_root=str(tmp / "modules"), kheaders=str(tmp / "kheaders.tar.xz"),
                        bundled=str(tmp / "bundle"))


def _node(tmp: Path) -> None:
    """A complete node tree in one directory, as a distribution's linux-headers-$(uname -r) gives."""
    inc = tmp / "modules" / RELEASE / "build" / "include"
    (inc / "linux").mkdir(parents=True)
    (inc / "generated").mkdir()
    (inc / "linux" / "kconfig.h").write_text("#include <generated/autoconf.h>\n")
    (inc / "generated" / "autoconf.h").write_text("#define CONFIG_X86 1\n")
    (inc / "generated" / "utsrelease.h").write_text(f'#define UTS_RELEASE "{RELEASE}"\n')


def _debian_split(tmp: Path, *, link_source: bool = True, common_has_kconfig: bool = True) -> None:
    """Debian's split: -amd64 (generated/, arch) as build/, -common (include/linux) as source/."""
    amd64, common = tmp / "src" / "linux-headers-6.1.0-57-amd64", tmp / "src" / "linux-headers-6.1.0-57-common"
    (amd64 / "include" / "generated").mkdir(parents=True)
    (amd64 / "include" / "generated" / "autoconf.h").write_text("#define CONFIG_X86 1\n")
    (amd64 / "include" / "generated" / "utsrelease.h").write_text('#define UTS_RELEASE "6.1.0-57-amd64"\n')
    (common / "include" / "linux").mkdir(parents=True)
    if common_has_kconfig:
        (common / "include" / "linux" / "kconfig.h").write_text("#include <generated/autoconf.h>\n")
    kdir = tmp / "modules" / RELEASE
    kdir.mkdir(parents=True)
    (kdir / "build").symlink_to(amd64)
    if link_source:
        (kdir / "source").symlink_to(common)


def _kheaders(tmp: Path) -> None:
    (tmp / "kheaders.tar.xz").write_bytes(b"\xfd7zXZ")


def _bundle(tmp: Path) -> None:
    (tmp / "bundle" / "include" / "linux").mkdir(parents=True)
    (tmp / "bundle" / "include" / "generated").mkdir(parents=True)
    (tmp / "bundle" / "include" / "linux" / "kconfig.h").write_text("/* kconfig */\n")
    (tmp / "bundle" / "include" / "generated" / "autoconf.h").write_text("#define CONFIG_X86 1\n")
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


# The trial report's segfault (exit 139): node trees BCC's lookup cannot compile from were taken as
# the node's own headers, so the agent never fell back although the bundled set was installed.

def test_debian_split_linked_both_ways_is_complete_and_names_the_version_mismatch(tmp_path: Path) -> None:
    _debian_split(tmp_path)
    _bundle(tmp_path)
    choice = kh.choose(_where(tmp_path), environ={})
    assert choice.source == "node"
    assert f"they are for 6.1.0-57-amd64, the running kernel is {RELEASE}" in choice.why
    assert "tracepoint fields only" in choice.why


def test_matching_node_headers_mention_no_mismatch(tmp_path: Path) -> None:
    _node(tmp_path)
    assert "running kernel" not in kh.choose(_where(tmp_path), environ={}).why


@pytest.mark.parametrize(("make", "missing"), [
    # the user's first repro: build/ linked to the -amd64 half, no source/: kconfig.h is in -common
    (lambda t: _debian_split(t, link_source=False), "no include/linux/kconfig.h under build/"),
    # the second: -common hidden (an empty directory), so source/ has no kconfig.h
    (lambda t: _debian_split(t, common_has_kconfig=False), "no include/linux/kconfig.h under source/"),
])
def test_a_half_linked_debian_tree_falls_back_to_the_bundle_and_says_why(tmp_path: Path, make, missing: str) -> None:
    make(tmp_path)
    _bundle(tmp_path)
    choice = kh.choose(_where(tmp_path), environ={})
    assert choice.source == "bundled"
    assert choice.why.startswith(f"node headers at {tmp_path}/modules/{RELEASE}/build are incomplete: {missing}")
    assert "using the generic set from linux-headers-6.1.0-57-amd64" in choice.why


def test_a_tree_without_autoconf_is_incomplete(tmp_path: Path) -> None:
    _node(tmp_path)
    (tmp_path / "modules" / RELEASE / "build" / "include" / "generated" / "autoconf.h").unlink()
    _bundle(tmp_path)
    choice = kh.choose(_where(tmp_path), environ={})
    assert choice.source == "bundled"
    assert "incomplete: no include/generated/autoconf.h" in choice.why


def test_a_dangling_build_link_is_named(tmp_path: Path) -> None:
    (tmp_path / "modules" / RELEASE).mkdir(parents=True)
    (tmp_path / "modules" / RELEASE / "build").symlink_to(tmp_path / "gone")
    _bundle(tmp_path)
    choice = kh.choose(_where(tmp_path), environ={})
    assert choice.source == "bundled"
    assert f"build is a broken link to {tmp_path / 'gone'}" in choice.why


def test_incomplete_node_and_nothing_else_says_remove_it(tmp_path: Path) -> None:
    _debian_split(tmp_path, link_source=False)
    with pytest.raises(kh.HeadersMissing) as err:
        kh.choose(_where(tmp_path), environ={})
    assert "are incomplete: no include/linux/kconfig.h" in str(err.value)
    assert "remove the incomplete" in str(err.value)


def test_kheaders_after_an_incomplete_node_tree_is_unpacked_for_bcc(tmp_path: Path) -> None:
    """BCC reaches the archive by itself only when kconfig.h is missing where it looks; with a
    node tree in the way the agent unpacks it and hands BCC the directory."""
    import io
    import tarfile

    _debian_split(tmp_path, link_source=False)
    archive = tmp_path / "kheaders.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        for name, body in (("./include/linux/kconfig.h", b"/* k */\n"), ("./include/generated/autoconf.h", b"\n"),
                           ("../escape.h", b"no\n")):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    choice = kh.choose(_where(tmp_path), environ={})
    assert choice.source == "kheaders" and choice.unpack
    assert "are incomplete: no include/linux/kconfig.h" in choice.why
    env: dict[str, str] = {}
    choice.apply(env)
    unpacked = Path(env[kh.BCC_ENV])
    try:
        assert (unpacked / "include" / "linux" / "kconfig.h").read_bytes() == b"/* k */\n"
        assert not (unpacked.parent / "escape.h").exists()
    finally:
        import shutil

        shutil.rmtree(unpacked)


def test_a_broken_kheaders_archive_is_a_one_line_error(tmp_path: Path) -> None:
    _kheaders(tmp_path)  # five bytes, not an archive
    with pytest.raises(kh.HeadersMissing, match=r"cannot unpack .*kheaders.tar.xz into .*bootstrap.sh"):
        kh.unpack_kheaders(str(tmp_path / "kheaders.tar.xz"), RELEASE, tmp_root=str(tmp_path))
