"""Exporting hypernetworks as LoRA files on the tiny pipeline, and loading those files in
plain diffusers (`load_lora_weights`, no hypernet code) to compare UNet outputs."""

import hashlib
import json

import pytest
import torch
from safetensors import safe_open

from hypernet import attention
from hypernet.errors import HypernetError
from hypernet.generation import ModelInfo
from hypernet.inspection import format_description, inspect_file
from hypernet.lora_export import export_lora
from hypernet.network import Hypernetwork
from tiny_models import SELF_SIZES, TEXT_WIDTH, tiny_pipeline

SIZES = [TEXT_WIDTH, *SELF_SIZES]  # every attention layer: cross (48) and self (32, 64)


def _strong(network: Hypernetwork, seed: int = 0, scale: float = 0.15) -> Hypernetwork:
    """Random weights large enough to change the UNet's output clearly."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in network.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            parameter.copy_(1 + 0.3 * noise if name.endswith("weight") and parameter.dim() == 1 else noise * scale)
    return network.eval()


def linear_network():
    return _strong(Hypernetwork.create(sizes=SIZES, name="lin"))


def nonlinear_network():
    return _strong(Hypernetwork.create(sizes=SIZES, activation="relu", layer_norm=True, name="nonlin"), seed=1)


def trained_like_pipeline():
    """The tiny pipeline with the UNet's LayerNorm biases non-zero, as in a trained model
    (freshly initialised they are 0, and a constant is then no linear function of their
    outputs: the value offset could not be folded)."""
    pipe = tiny_pipeline()
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for module in pipe.unet.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.bias.copy_(0.3 * torch.randn(module.bias.shape, generator=generator))
    return pipe


@pytest.fixture(scope="module")
def pipe():
    return trained_like_pipeline()


@pytest.fixture(scope="module")
def loader():
    """A second, identical pipeline that only ever sees LoRA files, through diffusers alone."""
    return trained_like_pipeline()


@pytest.fixture(scope="module")
def unet_inputs(pipe):
    generator = torch.Generator().manual_seed(5)
    sample = torch.randn(2, 4, 8, 8, generator=generator)
    context = torch.randn(2, 77, TEXT_WIDTH, generator=generator)
    with torch.no_grad():  # a real text context: the text encoder's LayerNorm outputs
        tokens = pipe.tokenizer(["a red circle", ""], padding="max_length", max_length=77, return_tensors="pt")
        context = pipe.text_encoder(tokens.input_ids)[0]
    return sample, torch.tensor([500, 500]), context


def _output(unet, inputs):
    with torch.no_grad():
        return unet(*inputs).sample


def hypernetwork_output(pipe, network, multiplier, inputs):
    try:
        with attention.activate(pipe.unet, [(network, multiplier)]):
            return _output(pipe.unet, inputs)
    finally:
        attention.uninstall(pipe.unet)


def lora_output(loader, path, inputs, weight=1.0):
    loader.load_lora_weights(str(path), adapter_name="exported")
    try:
        loader.set_adapters(["exported"], adapter_weights=[weight])
        return _output(loader.unet, inputs)
    finally:
        loader.unload_lora_weights()


def _relative(a, b):
    return float((a - b).norm() / b.norm())


def _cosine(a, b):
    return float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0))


def _checksum(module) -> str:
    digest = hashlib.sha256()
    for tensor in module.state_dict().values():
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("layout", ["kohya", "diffusers"])
def test_full_rank_lora_reproduces_a_linear_network_in_plain_diffusers(pipe, loader, unet_inputs, tmp_path, layout):
    network = linear_network()
    path = tmp_path / "lin.safetensors"
    before = _checksum(pipe.unet)
    report = export_lora(pipe, network, path, multiplier=0.8, layout=layout, base_model=ModelInfo("tiny", "abc"))
    assert _checksum(pipe.unet) == before and attention.installed_chain(pipe.unet) is None
    base = _output(loader.unet, unet_inputs)
    target = hypernetwork_output(pipe, network, 0.8, unet_inputs)
    assert _relative(target, base) > 0.05  # the network changes the output clearly
    loaded = lora_output(loader, path, unet_inputs)
    assert _relative(loaded - base, target - base) < 1e-4
    assert report.method == "exact" and report.max_error == 0
    # one LoRA module per projection of every attention layer: self- (32, 64) and cross-attention (48)
    layers = {layer.module.rsplit(".", 2)[1] for layer in report.layers}
    assert layers == {"attn1", "attn2"} and len(report.layers) == 2 * 14
    # its weight scales the change as the multiplier does, the network being linear in it
    half = lora_output(loader, path, unet_inputs, weight=0.5)
    assert _relative(half - base, hypernetwork_output(pipe, network, 0.4, unet_inputs) - base) < 1e-3


def test_low_rank_moves_the_output_the_same_way_and_the_value_offset_matters(pipe, loader, unet_inputs, tmp_path):
    network = linear_network()
    base = _output(loader.unet, unet_inputs)
    change = hypernetwork_output(pipe, network, 1.0, unet_inputs) - base
    errors, cosines = {}, {}
    for rank in (4, 16):  # of 32 to 64: a random network has no small rank to find
        export_lora(pipe, network, tmp_path / f"r{rank}.safetensors", rank=rank)
        moved = lora_output(loader, tmp_path / f"r{rank}.safetensors", unet_inputs) - base
        errors[rank], cosines[rank] = _relative(moved, change), _cosine(moved, change)
    assert errors[16] < errors[4] and cosines[16] > cosines[4] > 0.5 and cosines[16] > 0.9, (errors, cosines)
    dropped = export_lora(pipe, network, tmp_path / "drop.safetensors", fold_value_bias=False)
    values = [layer for layer in dropped.layers if layer.module.endswith("to_v")]
    assert all("dropped" in layer.bias and layer.error > 0 for layer in values)  # its share counts as error
    error_dropped = _relative(lora_output(loader, tmp_path / "drop.safetensors", unet_inputs) - base, change)
    assert error_dropped > 1e-2  # without the value offset the full-rank LoRA is no longer exact


def test_the_file_says_where_it_comes_from_and_inspect_shows_it(pipe, tmp_path):
    network = linear_network()
    source = tmp_path / "lin.pt"
    from hypernet import formats

    formats.save(network, source)
    network = formats.load(source)
    path = tmp_path / "lin-lora.safetensors"
    export_lora(pipe, network, path, error=0.05, base_model=ModelInfo("tiny-model", "0123456789"))
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        keys = list(handle.keys())
    assert all(key.startswith("lora_unet_") for key in keys)
    assert any(key.endswith("attn1_to_k.lora_down.weight") for key in keys)
    assert metadata["hypernet_source_name"] == "lin"
    assert metadata["hypernet_source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert metadata["hypernet_multiplier"] == "1"
    assert json.loads(metadata["hypernet_base_model"]) == {"name": "tiny-model", "hash": "0123456789"}
    assert json.loads(metadata["hypernet_rank"])["requested"].startswith("smallest")
    assert json.loads(metadata["hypernet_fit_error"])["max"] <= 0.05
    assert "tiny-model" in metadata["hypernet_note"] and "another base model" in metadata["hypernet_note"]
    info = inspect_file(path)
    assert info["kind"] == "lora" and info["export"]["source_name"] == "lin"
    text = format_description(info)
    assert "LoRA (kohya layout)" in text and "tiny-model [0123456789]" in text and "fit error" in text


def test_a_nonlinear_network_is_fitted_over_activations(pipe, loader, unet_inputs, tmp_path):
    network = nonlinear_network()
    with pytest.raises(HypernetError, match="not affine.*give prompts"):
        export_lora(pipe, network, tmp_path / "x.safetensors")
    before = _checksum(pipe.unet)
    prompts = ["a red circle", "a blue square", "a green cross", "a black triangle", "a white circle"]
    report = export_lora(pipe, network, tmp_path / "fit.safetensors", prompts=prompts, steps=2)
    assert _checksum(pipe.unet) == before and attention.installed_chain(pipe.unet) is None
    assert report.method == "fit" and "held-out" in report.error_measured_on
    assert all(0 < layer.error < 1 for layer in report.layers)
    fitted = json.loads(inspect_file(tmp_path / "fit.safetensors")["export"]["fit_error"]["prompts"].__str__())
    assert fitted == 5
    base = _output(loader.unet, unet_inputs)
    change = hypernetwork_output(pipe, network, 1.0, unet_inputs) - base
    assert _cosine(lora_output(loader, tmp_path / "fit.safetensors", unet_inputs) - base, change) > 0.5


def test_fitting_a_linear_network_finds_its_exact_delta(pipe, loader, unet_inputs, tmp_path):
    """The fit machinery checked on a case with a known answer: over LayerNorm outputs a
    linear map carries the whole affine change, so the full-rank fit is the exact delta."""
    network = linear_network()
    prompts = ["a red circle", "a blue square", "a green cross", "a black triangle", "a white circle"]
    report = export_lora(pipe, network, tmp_path / "fit.safetensors", prompts=prompts, steps=2, fit=True)
    assert report.method == "fit" and report.max_error < 1e-3
    base = _output(loader.unet, unet_inputs)
    change = hypernetwork_output(pipe, network, 1.0, unet_inputs) - base
    assert _relative(lora_output(loader, tmp_path / "fit.safetensors", unet_inputs) - base, change) < 1e-3


def test_refusals(pipe, tmp_path):
    with pytest.raises(HypernetError, match="none of this model's attention widths"):
        export_lora(pipe, Hypernetwork.create(sizes=[768]), tmp_path / "x.safetensors")
    with pytest.raises(HypernetError, match="not both"):
        export_lora(pipe, linear_network(), tmp_path / "x.safetensors", rank=2, error=0.1)
    with pytest.raises(HypernetError, match=r"\.safetensors"):
        export_lora(pipe, linear_network(), tmp_path / "x.pt")
    with pytest.raises(HypernetError, match="valid names: diffusers, kohya"):
        export_lora(pipe, linear_network(), tmp_path / "x.safetensors", layout="comfy")
    assert not list(tmp_path.iterdir())


def test_a_network_that_changes_nothing_is_refused_and_nothing_is_written(pipe, tmp_path):
    """A network just created (ZeroLast: last layers zero) or multiplier 0: the LoRA would
    be empty, a file `inspect` could not describe; the export says why instead."""
    fresh = Hypernetwork.create(sizes=[*SELF_SIZES, TEXT_WIDTH], name="fresh", weight_init="ZeroLast")
    for network, multiplier in ((fresh, 1.0), (linear_network(), 0.0)):
        path = tmp_path / "empty.safetensors"
        with pytest.raises(HypernetError, match="changes nothing") as caught:
            export_lora(pipe, network, path, multiplier=multiplier)
        assert "Nothing was written" in str(caught.value) and not path.exists()
