"""LoRA and textual-inversion files in the webui/kohya layouts, created here, applied by tags."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from hypernet import attention
from hypernet.errors import HypernetError, HypernetFileError
from hypernet.extra_networks import embedding_vectors, load_embeddings
from hypernet.generation import Generator, ModelInfo, Request
from tiny_models import TEXT_WIDTH


def kohya_lora(unet, rank=4, seed=0):
    """A kohya/webui-style LoRA for every attention projection of the UNet."""
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, module in unet.named_modules():
        if name.endswith((".to_q", ".to_k", ".to_v", ".to_out.0")) and ".attn" in name:
            key = "lora_unet_" + name.replace(".", "_")
            tensors[f"{key}.lora_down.weight"] = torch.randn(rank, module.in_features, generator=g) * 0.5
            tensors[f"{key}.lora_up.weight"] = torch.randn(module.out_features, rank, generator=g) * 0.5
            tensors[f"{key}.alpha"] = torch.tensor(float(rank))
    return tensors


@pytest.fixture(scope="module")
def setup(pipe, tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    (root / "Lora").mkdir()
    save_file(kohya_lora(pipe.unet), root / "Lora" / "shiny.safetensors")
    (root / "embeddings").mkdir()
    g = torch.Generator().manual_seed(3)
    vectors = torch.randn(2, TEXT_WIDTH, generator=g)
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": torch.nn.Parameter(vectors)},
                "name": "mystyle", "step": 100}, root / "embeddings" / "mystyle.pt")
    save_file({"emb_params": vectors * 2}, root / "embeddings" / "other.safetensors")
    save_file({"emb_params": torch.randn(1, 1024)}, root / "embeddings" / "sd2only.safetensors")
    generator = Generator(pipe, model=ModelInfo("tiny"), lora_dir=root / "Lora", embeddings_dir=root / "embeddings")
    yield generator, root
    attention.uninstall(pipe.unet)


def image(generator, prompt):
    request = Request(prompt=prompt, steps=2, seed=3, sampler="DDIM", width=32, height=32)
    return np.asarray(generator.generate(request, progress=False)[0].image)


def test_lora_tag_changes_the_output_and_weight_zero_is_bit_identical(setup):
    generator, _ = setup
    base = image(generator, "a red circle")
    with_lora = image(generator, "a red circle <lora:shiny:1>")
    assert not np.array_equal(base, with_lora)
    assert np.array_equal(image(generator, "a red circle <lora:shiny:0>"), base)
    assert np.array_equal(image(generator, "a red circle"), base)  # switched off again after use


def test_unknown_lora_names_the_closest(setup):
    generator, _ = setup
    with pytest.raises(HypernetError, match="shiny"):
        image(generator, "x <lora:shinny:1>")


def test_embedding_by_file_name_changes_the_output(setup):
    generator, _ = setup
    assert generator.prompt_encoder.embeddings.keys() >= {"mystyle", "other"}
    assert any("sd2only" in w and "1024" in w for w in generator.warnings)
    base = image(generator, "a red circle in style")
    styled = image(generator, "a red circle in mystyle")
    assert not np.array_equal(base, styled)
    assert not np.array_equal(styled, image(generator, "a red circle in other"))


def test_embedding_formats_and_refusals(tmp_path):
    torch.save({"<cat>": torch.ones(TEXT_WIDTH)}, tmp_path / "learned_embeds.bin")
    assert embedding_vectors(tmp_path / "learned_embeds.bin").shape == (1, TEXT_WIDTH)
    torch.save({"weights": torch.ones(2), "other": torch.ones(3)}, tmp_path / "bad.pt")
    with pytest.raises(HypernetFileError, match="not a textual-inversion embedding"):
        embedding_vectors(tmp_path / "bad.pt")
    embeddings, warnings = load_embeddings(tmp_path, TEXT_WIDTH)
    assert list(embeddings) == ["learned_embeds"] and len(warnings) == 1
