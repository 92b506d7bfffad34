"""Feature detection from tracefs formats and preflight errors, on fake trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.kernel import headers as kernel_headers
from agent.kernel import loader, preflight
from agent.kernel.tracefs import Tracefs, TracefsMissing, find_root
from probes import registry

SEND_RESET_NEW = """name: tcp_send_reset
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:const void * skaddr;\toffset:16;\tsize:8;\tsigned:0;
\tfield:enum sk_rst_reason reason;\toffset:28;\tsize:4;\tsigned:0;
\tfield:__u8 saddr[28];\toffset:32;\tsize:28;\tsigned:0;
\tfield:__u8 daddr[28];\toffset:60;\tsize:28;\tsigned:0;
"""
SEND_RESET_OLD = """format:
\tfield:const void * skaddr;\toffset:16;\tsize:8;\tsigned:0;
\tfield:__u16 sport;\toffset:24;\tsize:2;\tsigned:0;
\tfield:__u8 saddr[4];\toffset:32;\tsize:4;\tsigned:0;
"""


def _tree(root: Path, formats: dict[str, str]) -> Tracefs:
    for tp, text in formats.items():
        cat, name = tp.split(":")
        d = root / "events" / cat / name
        d.mkdir(parents=True)
        (d / "format").write_text(text)
    return Tracefs(root)


def test_fields_are_parsed_without_common_ones(tmp_path: Path) -> None:
    tf = _tree(tmp_path, {"tcp:tcp_send_reset": SEND_RESET_NEW})
    f = tf.fields("tcp:tcp_send_reset")
    assert list(f) == ["skaddr", "reason", "saddr", "daddr"]
    assert f["saddr"].type == "__u8 [28]" and f["saddr"].offset == 32 and f["reason"].type == "enum sk_rst_reason"
    assert tf.fields("tcp:absent") == {}


def test_reset_probe_layout_variant_follows_the_format(tmp_path: Path) -> None:
    spec = registry.get("tcp_reset")
    new = loader.plan(spec, _tree(tmp_path / "new", {"tcp:tcp_send_reset": SEND_RESET_NEW, "tcp:tcp_receive_reset": "format:\n"}))
    assert new.ready and {"SEND_RESET_SOCKADDR", "NEED_ENUM_SK_RST_REASON"} <= set(new.defines)
    old = loader.plan(spec, _tree(tmp_path / "old", {"tcp:tcp_send_reset": SEND_RESET_OLD, "tcp:tcp_receive_reset": "format:\n"}))
    assert old.ready and "SEND_RESET_SOCKADDR" not in old.defines


def test_missing_required_tracepoint_makes_the_probe_not_ready_with_a_reason(tmp_path: Path) -> None:
    plan = loader.plan(registry.get("oom"), _tree(tmp_path, {"sched:sched_process_fork": "format:\n"}))
    assert not plan.ready
    assert "oom:mark_victim" in plan.reason() and "the other probes still run" in plan.reason()
    with pytest.raises(loader.ProbeLoadError, match="kernel lacks tracepoint oom:mark_victim"):
        loader.load(plan)


def test_optional_tracepoints_only_add_detail(tmp_path: Path) -> None:
    plan = loader.plan(registry.get("tcp_lifecycle"), _tree(tmp_path, {"sock:inet_sock_set_state": "format:\n"}))
    assert plan.ready and "HAVE_SOCK_LENGTH" not in plan.defines
    assert any("bytes" in m and "sock:sock_send_length" in m for m in plan.missing_optional)


def test_tracefs_not_mounted_says_how_to_mount(tmp_path: Path) -> None:
    with pytest.raises(TracefsMissing, match="mount -t tracefs tracefs /sys/kernel/tracing"):
        find_root((str(tmp_path),))


@pytest.mark.ebpf
def test_preflight_names_missing_headers(tmp_path: Path) -> None:
    where = kernel_headers.Locations(
        release="6.18.0-test", modules_root=str(tmp_path), kheaders=str(tmp_path / "kheaders.tar.xz"),
        bundled=str(tmp_path / "bundle"),
    )
    with pytest.raises(preflight.PreflightError, match=r"kernel headers not found: .*bootstrap.sh.*linux-headers"):
        preflight.check(headers=where)


@pytest.mark.ebpf
def test_preflight_names_missing_tracefs(tmp_path: Path) -> None:
    with pytest.raises(preflight.PreflightError, match="tracefs is not mounted"):
        preflight.check(tracefs_roots=(str(tmp_path),))
