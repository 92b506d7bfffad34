"""No configuration the project ships can fill its pod's disk: the shipped agent config's files fit
the DaemonSet's emptyDir with margin, and with otlp_endpoint set no local spans file is written."""

from __future__ import annotations

import os
from pathlib import Path

import container_flags
import manifests
import pytest

from agent import config as agent_config

MARGIN = 0.75  # the files may use at most this share of the emptyDir (the rest: anything else in var)


def _shipped(tmp_path: Path) -> agent_config.AgentConfig:
    data = manifests.one("ConfigMap", "bcgov-config")["data"]
    (tmp_path / "agent.yaml").write_text(data["agent.yaml"])
    return agent_config.load(str(tmp_path / "agent.yaml"), {})


def _mount_of(path: str) -> tuple[str, int]:
    """(mountPath, sizeLimit bytes) of the emptyDir holding `path` (relative paths: the WORKDIR)."""
    pod = manifests.one("DaemonSet", "bcgov-agent")["spec"]["template"]["spec"]
    absolute = path if path.startswith("/") else os.path.join("/opt/bcgov", path)  # the image's WORKDIR
    volumes = {v["name"]: v for v in pod["volumes"]}
    for m in pod["containers"][0]["volumeMounts"]:
        vol = volumes[m["name"]]
        if "emptyDir" in vol and absolute.startswith(m["mountPath"].rstrip("/") + "/"):
            return m["mountPath"], container_flags.quantity_bytes(vol["emptyDir"]["sizeLimit"])
    raise AssertionError(f"{absolute} is on no sized emptyDir: the read-only root would refuse it")


def test_shipped_config_files_fit_their_emptydir_with_margin(tmp_path: Path) -> None:
    cfg = _shipped(tmp_path)
    assert cfg.otlp_endpoint is None  # so the spans file is in use and must fit
    per_mount: dict[str, int] = {}
    limits: dict[str, int] = {}
    # the event log counts even though the shipped config sends events to stderr: one line of config
    # (log_file: var/events.jsonl) must not be able to break the budget
    files = [(cfg.spans_file, cfg.spans_file_max_bytes, cfg.spans_file_backups),
             (cfg.log_file or "var/events.jsonl", cfg.log_file_max_bytes, cfg.log_file_backups)]
    for path, max_bytes, backups in files:
        mount, size = _mount_of(path)
        per_mount[mount] = per_mount.get(mount, 0) + max_bytes * (backups + 1)
        limits[mount] = size
    for mount, used in per_mount.items():
        assert used <= MARGIN * limits[mount], f"{mount}: {used} bytes of files, sizeLimit {limits[mount]}"


def test_with_a_collector_the_shipped_config_writes_no_spans_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.export.spans import OtlpExporter
    from agent.runtime import Agent, AgentParts

    monkeypatch.chdir(tmp_path)  # the shipped spans_file is relative: var/spans.jsonl here
    cfg = _shipped(tmp_path)
    cfg.otlp_endpoint, cfg.metrics_addr, cfg.probes = "http://127.0.0.1:1", "off", []
    cfg.otlp_timeout_seconds = 0.5
    agent = Agent(cfg, tracefs=None, parts=AgentParts(specs=()))  # type: ignore[arg-type]
    agent.start()
    try:
        assert isinstance(agent._span_queue._exporter, OtlpExporter)  # type: ignore[union-attr]
    finally:
        agent.stop()
    assert not (tmp_path / cfg.spans_file).exists() and not (tmp_path / "var").exists()
