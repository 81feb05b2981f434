"""Fixtures: one live server per test module (see live.py)."""

from __future__ import annotations

import pytest

from .live import serve


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """The toy model runs ~10x faster on one intra-op thread on a busy 2-core machine;
    restored after each module, so the tests of other folders keep their setting."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """One server per test module: the model loads once."""
    server = serve(tmp_path_factory.mktemp("served"), queue_size=64)
    server.wait_idle()
    yield server
    server.stop()


@pytest.fixture
def http(live):
    with live.client() as client:
        yield client

