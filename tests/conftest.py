"""Test-wide settings: hubs are offline for every test.

`needs_toy_model` marks the tests that use the embedded toy model shipped in
`src/hypernet/data/toy` (deselect them with `-m "not needs_toy_model"`). The model is
part of the package, so a missing one makes those tests fail, never skip.
"""

import os
import signal

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HYPERNET_CALIBRATE", "0")  # throw-away networks: no after-training calibration (tests that want it set 1)


@pytest.fixture(scope="module")
def pipe():
    """The tiny Stable Diffusion pipeline (random weights, `tiny_models.py`), one per test
    module: every test that needs a whole pipeline takes this one."""
    from tiny_models import tiny_pipeline

    return tiny_pipeline()


@pytest.fixture
def terminal_sigint():
    """Ctrl-C as in a terminal (a background job of a shell starts with SIGINT ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
