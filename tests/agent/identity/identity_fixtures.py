"""Fixtures for the identity tests: the stand-in kube-apiserver and real cgroup trees.

Imported by the test modules by name rather than living in a ``conftest.py``: the agent tests import
``from conftest import ...``, and a second conftest module here would shadow theirs.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator

import pytest
from identity_helpers import CgroupTree, load_fixture
from identity_standin_apiserver import StandInAPIServer, make_self_signed_cert, write_kubeconfig


@pytest.fixture(scope="session")
def standin_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """Self-signed cert/key for the stand-in API server (made once per session)."""
    return make_self_signed_cert(str(tmp_path_factory.mktemp("tls")))


@pytest.fixture
def standin(standin_cert: tuple[str, str], tmp_path: pathlib.Path) -> Iterator[tuple[StandInAPIServer, str]]:
    """A running stand-in kube-apiserver loaded with the recorded fixtures, and a kubeconfig for it."""
    server = StandInAPIServer(load_fixture("pods.json"), load_fixture("owners.json"))
    url = server.start(*standin_cert)
    kubeconfig = str(tmp_path / "kubeconfig")
    write_kubeconfig(kubeconfig, url, standin_cert[0])
    try:
        yield server, kubeconfig
    finally:
        server.stop()


@pytest.fixture
def cgroup_tree() -> Iterator[CgroupTree]:
    """Real cgroup2 directories (root needed), always removed afterwards."""
    from agent.identity.cgroups import find_cgroup2_root

    if os.geteuid() != 0:
        pytest.skip("creating cgroups needs root")
    tree = CgroupTree(find_cgroup2_root())
    try:
        yield tree
    finally:
        tree.cleanup()
