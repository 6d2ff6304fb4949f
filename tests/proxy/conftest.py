"""Fixtures the proxy tests share."""

import pytest

from tests.proxy_support import recorded_upstream


@pytest.fixture(scope="module")
def shop():
    """A real upstream on loopback that records what reaches it (one per test module)."""
    with recorded_upstream() as server:
        yield server
