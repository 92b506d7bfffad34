"""The test server library itself: servers stop and their directories go, also when the body fails."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests import servers

pytestmark = pytest.mark.integration


class Boom(Exception):
    pass


def test_prometheus_and_alertmanager_are_cleaned_up_on_failure(tmp_path: Path) -> None:
    seen = {}
    with pytest.raises(Boom), servers.start_prometheus(servers.scrape_config("127.0.0.1:1", job="none"), tmp_path) as prom, \
                servers.start_alertmanager(tmp_path) as am:
        seen = {"prom": (prom.url, prom.workdir, prom._p.proc), "am": (am.url, am._p.workdir, am._p.proc)}
        assert requests.get(prom.url + "/-/ready", timeout=2).status_code == 200
        assert requests.get(am.url + "/-/ready", timeout=2).status_code == 200
        raise Boom()
    for url, workdir, proc in seen.values():
        assert proc.returncode is not None
        assert not workdir.exists()
        with pytest.raises(requests.ConnectionError):
            requests.get(url + "/-/ready", timeout=2)


def test_startup_failure_reports_the_log(tmp_path: Path) -> None:
    with pytest.raises(servers.ServerError, match="prometheus"), servers.start_prometheus("this: is: not: yaml", tmp_path):
        pass
    assert list(tmp_path.iterdir()) == []
