"""The key tables agree with diffusers' own single-file converters (an independent reference).

diffusers ships converters from the original layout (``convert_ldm_unet_checkpoint`` and
friends); hypernet does not use them (they are tied to hub configs), but they make a
good witness: original-layout tensors written by our tables must convert, through
diffusers' code, back into exactly the modules' weights.
"""

from __future__ import annotations

import pytest
import torch

from hypernet.models.assembly import _build_modules
from hypernet.models.key_matching import key_tables
from hypernet.models.configs import PipelineConfig, family_config
from hypernet.models.layout import SD2_TEXT_PREFIX, open_clip_extras

from .tiny import sd_shaped_config


def _original_state(modules, config, layout):
    states = {name: module.state_dict() for name, module in modules.items()}
    result = {}
    for pair in key_tables(modules, config, layout):
        result[pair.original] = pair.to_original([states[pair.component][k] for k in pair.diffusers])
    if layout == "sd2":
        result.update(open_clip_extras(config.text_encoder, torch.float32))
    return result


def _diffusers_conversion(original, modules, config: PipelineConfig, layout):
    from diffusers.loaders import single_file_utils as sfu

    unet = sfu.convert_ldm_unet_checkpoint(original, dict(config.unet))
    vae = sfu.convert_ldm_vae_checkpoint(original, dict(config.vae))
    if layout == "sd1":
        text = sfu.convert_ldm_clip_checkpoint(original)
    else:
        text = sfu.convert_open_clip_checkpoint(modules["text_encoder"], original, prefix=SD2_TEXT_PREFIX)
    text = {k.removeprefix("text_model."): v for k, v in text.items()}
    return {"unet": unet, "vae": vae, "text_encoder": text}


@pytest.mark.parametrize("layout", ["sd1", "sd2"])
def test_tables_agree_with_diffusers_values(layout):
    config = sd_shaped_config(layout)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        modules = _build_modules(config, empty=False)
    original = _original_state(modules, config, layout)
    converted = _diffusers_conversion(original, modules, config, layout)
    for name, module in modules.items():
        state = module.state_dict()
        got = {k: v for k, v in converted[name].items() if k in state}
        assert set(got) == set(state), (name, sorted(set(state) - set(got))[:5])
        for key, value in state.items():
            assert torch.equal(got[key].reshape(value.shape), value), (name, key)


@pytest.mark.parametrize("family", ["sd15", "sd2"])
def test_tables_agree_with_diffusers_keys_at_full_size(family):
    config = family_config(family)
    layout = "sd1" if family == "sd15" else "sd2"
    modules = _build_modules(config, empty=True)
    original = _original_state(modules, config, layout)
    converted = _diffusers_conversion(original, modules, config, layout)
    for name, module in modules.items():
        state = module.state_dict()
        got = {k: v for k, v in converted[name].items() if k in state}
        assert set(got) == set(state), name
        assert all(tuple(got[k].shape) == tuple(v.shape) for k, v in state.items()), name


def test_well_known_original_keys_and_shapes():
    config = family_config("sd15")
    modules = _build_modules(config, empty=True)
    original = _original_state(modules, config, "sd1")
    shapes = {key: tuple(tensor.shape) for key, tensor in original.items()}
    # Literal keys and shapes of the public SD 1.5 file.
    expected = {
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
        "model.diffusion_model.input_blocks.3.0.op.weight": (320, 320, 3, 3),
        "model.diffusion_model.middle_block.1.proj_in.weight": (1280, 1280, 1, 1),
        "model.diffusion_model.output_blocks.2.1.conv.weight": (1280, 1280, 3, 3),
        "model.diffusion_model.output_blocks.5.2.conv.weight": (1280, 1280, 3, 3),
        "model.diffusion_model.output_blocks.11.1.proj_out.bias": (320,),
        "model.diffusion_model.time_embed.2.weight": (1280, 1280),
        "model.diffusion_model.out.2.weight": (4, 320, 3, 3),
        "first_stage_model.encoder.mid.attn_1.q.weight": (512, 512, 1, 1),
        "first_stage_model.decoder.up.0.block.0.nin_shortcut.weight": (128, 256, 1, 1),
        "first_stage_model.decoder.up.3.upsample.conv.weight": (512, 512, 3, 3),
        "first_stage_model.quant_conv.weight": (8, 8, 1, 1),
        "cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc2.weight": (768, 3072),
        "cond_stage_model.transformer.text_model.final_layer_norm.weight": (768,),
    }
    for key, shape in expected.items():
        assert shapes[key] == shape, key
    counts = {
        prefix: sum(k.startswith(prefix) for k in shapes)
        for prefix in ("model.", "first_stage_model.", "cond_stage_model.")
    }
    assert counts == {"model.": 686, "first_stage_model.": 248, "cond_stage_model.": 196}


def test_sd2_open_clip_keys():
    config = family_config("sd2")
    modules = _build_modules(config, empty=True)
    original = _original_state(modules, config, "sd2")
    assert tuple(original[SD2_TEXT_PREFIX + "transformer.resblocks.0.attn.in_proj_weight"].shape) == (3072, 1024)
    assert tuple(original[SD2_TEXT_PREFIX + "positional_embedding"].shape) == (77, 1024)
    assert SD2_TEXT_PREFIX + "transformer.resblocks.23.mlp.c_proj.weight" in original  # the unused last block
    assert tuple(original["model.diffusion_model.input_blocks.1.1.proj_in.weight"].shape) == (320, 320)
