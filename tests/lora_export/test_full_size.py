"""The SD 1.5 architecture at full size, without weights: a UNet built on the meta device
from the shipped config. Every attention layer a webui-default hypernetwork reaches gets
LoRA keys that diffusers converts and injects into exactly those layers, with the right
shapes; a real export (the 320 layers' projections given values) loads the same way."""

import pytest
import torch
from diffusers import StableDiffusionPipeline
from peft.tuners.lora import LoraLayer

from hypernet.lora_export import export_lora
from hypernet.lora_export.files import lora_tensors, write_lora
from hypernet.lora_export.targets import find_targets
from hypernet.models.assembly import _build_modules
from hypernet.models.configs import family_config
from hypernet.network import Hypernetwork

WEBUI_SIZES = {768, 320, 640, 1280}


@pytest.fixture()
def unet():
    return _build_modules(family_config("sd15"), empty=True)["unet"]


def _injected(unet, path) -> dict[str, tuple]:
    """{module: (lora_A shape, lora_B shape)} after diffusers' own conversion and peft's injection."""
    state_dict, alphas = StableDiffusionPipeline.lora_state_dict(str(path))
    unet.load_lora_adapter(state_dict, prefix="unet", network_alphas=alphas, low_cpu_mem_usage=True, adapter_name="x")
    return {name: (tuple(module.lora_A["x"].weight.shape), tuple(module.lora_B["x"].weight.shape))
            for name, module in unet.named_modules() if isinstance(module, LoraLayer)}


def test_every_attention_layer_of_sd15_gets_keys_diffusers_injects(unet, tmp_path):
    targets = find_targets(unet, WEBUI_SIZES)
    assert len(targets) == 32 and sum(t.cross for t in targets) == 16  # 16 transformer blocks: attn1 + attn2
    assert {t.width for t in targets if t.cross} == {768} and {t.width for t in targets if not t.cross} == {320, 640, 1280}
    rank = 8
    factors = {f"{t.name}.{side}": (torch.zeros(getattr(t.attention, side).out_features, rank),
                                     torch.zeros(rank, t.width)) for t in targets for side in ("to_k", "to_v")}
    write_lora(tmp_path / "plan.safetensors", lora_tensors("kohya", factors), {})
    injected = _injected(unet, tmp_path / "plan.safetensors")
    expected = {name: ((rank, getattr(unet.get_submodule(name.rsplit(".", 1)[0]), name.rsplit(".", 1)[1]).in_features),
                       (getattr(unet.get_submodule(name.rsplit(".", 1)[0]), name.rsplit(".", 1)[1]).out_features, rank))
                for name in factors}
    assert injected == expected


def test_a_real_export_on_sd15_dimensions_loads(unet, tmp_path):
    generator = torch.Generator().manual_seed(0)
    targets = find_targets(unet, {320})
    for target in targets:  # values only where the export reads them: the projections and norm1
        for side in ("to_k", "to_v"):
            linear = getattr(target.attention, side)
            linear.weight = torch.nn.Parameter(torch.randn(linear.weight.shape, generator=generator) * 0.03)
        norm = unet.get_submodule(target.name.rsplit(".", 1)[0]).norm1
        norm.weight = torch.nn.Parameter(1 + 0.1 * torch.randn(norm.weight.shape, generator=generator))
        norm.bias = torch.nn.Parameter(0.1 * torch.randn(norm.bias.shape, generator=generator))
    network = Hypernetwork.create(sizes=[320], generator_seed=0)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, torch.nn.Linear):
                module.bias.normal_(0, 0.1, generator=generator)
    holder = type("Pipe", (), {"unet": unet, "text_encoder": None})()
    report = export_lora(holder, network, tmp_path / "sd15-320.safetensors", rank=16)
    assert len(report.layers) == 10 and report.ranks == [16]  # 5 self-attention layers of width 320
    assert all(layer.bias == "value offset: folded (exact)" for layer in report.layers if layer.module.endswith("to_v"))
    injected = _injected(unet, tmp_path / "sd15-320.safetensors")
    assert len(injected) == 10 and set(injected.values()) == {((16, 320), (320, 16))}
