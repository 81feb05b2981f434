import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest


def _toy_model_shipped() -> bool:
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "src" / "hypernet" / "data" / "toy"
    return (folder / "model_index.json").is_file()


def pytest_collection_modifyitems(config, items):
    """Tests of the trained embedded model run once its weights are shipped (issue 4);
    until then they are reported as skipped with that reason, never silently passed."""
    if _toy_model_shipped():
        return
    skip = pytest.mark.skip(reason="the embedded toy model is not trained and shipped yet (issue 4)")
    for item in items:
        if "needs_toy_model" in item.keywords:
            item.add_marker(skip)
