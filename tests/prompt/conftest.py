"""Fixtures for the prompt tests: the shipped CLIP vocabulary and a tiny random text encoder."""

from pathlib import Path

import pytest

TOKENIZER_DIR = Path(__file__).resolve().parents[2] / "src" / "hypernet" / "data" / "clip_tokenizer"


@pytest.fixture(scope="session")
def tokenizer_dir():
    return TOKENIZER_DIR


@pytest.fixture(scope="session")
def tokenizer():
    from transformers import CLIPTokenizer

    return CLIPTokenizer(str(TOKENIZER_DIR / "vocab.json"), str(TOKENIZER_DIR / "merges.txt"))


@pytest.fixture(scope="session")
def text_encoder():
    """The tiny test text encoder (`tiny_models.py`), 32 wide."""
    from tiny_models import tiny_text_encoder

    return tiny_text_encoder(0, width=32)
