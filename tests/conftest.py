from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import Pair, certs


@pytest.fixture(scope="session")
def cert_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return certs(Path(tmp_path_factory.mktemp("certs")))


@pytest.fixture
def pair(cert_pair: tuple[str, str]) -> Pair:
    """A connected client/server pair, hello done, in virtual time."""
    p = Pair(*cert_pair)
    p.run(0.5)
    assert p.client.ready
    assert p.server is not None
    assert p.server.ready
    return p
