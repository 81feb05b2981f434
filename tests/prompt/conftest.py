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
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    config = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )
    model = CLIPTextModel(config).eval()
    # A trained CLIP's final layer norm has a bias, so its output mean is not ~0; the
    # webui's mean restoration divides by that mean, so give the tiny model one too.
    with torch.no_grad():
        norm = getattr(model, "text_model", model).final_layer_norm
        norm.weight.normal_(1.0, 0.2)
        norm.bias.normal_(0.3, 0.2)
    return model
