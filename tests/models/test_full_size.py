"""Full-size SD 1.5 and SD 2.x (768-v) single files, in the webui key layout, load offline.

The files are written by ``fake_checkpoints`` (random fp16 values, ~2-2.6 GB in tmp_path)
with the keys and shapes of the public checkpoints, plus the extra entries real files
carry (noise-schedule buffers, EMA bookkeeping, OpenCLIP's unused last block). Loading
in fp16 keeps memory and time down; the conversion code is the same for every dtype.
"""

from __future__ import annotations

import gc

import pytest
import torch

from hypernet.errors import HypernetFileError
from hypernet.models import describe_checkpoint, load_pipeline
from hypernet.models.assembly import _build_modules
from hypernet.models.key_matching import _expected_shapes, key_tables
from hypernet.models.configs import family_config
from hypernet.models.layout import SD2_TEXT_PREFIX, UNET_PREFIX, VAE_PREFIX

from .fake_checkpoints import expected_tensor, random_pool, write_fake_safetensors

pytestmark = pytest.mark.slow

EXTRAS = {"alphas_cumprod": (1000,), "betas": (1000,), "model_ema.decay": ()}
# Tensors given random values; the others are zeros (holes of a sparse file). That every
# tensor lands in its place is shown against diffusers' converters in test_layout.py.
SD15_CHECKED = {
    UNET_PREFIX + name
    for name in [
        "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight", "input_blocks.9.0.op.weight",
        "input_blocks.11.0.out_layers.3.weight", "middle_block.2.emb_layers.1.weight", "output_blocks.5.2.conv.weight",
        "output_blocks.11.1.proj_out.weight", "output_blocks.9.0.skip_connection.weight", "time_embed.2.weight",
    ]
} | {
    VAE_PREFIX + name
    for name in [
        "encoder.mid.attn_1.q.weight", "decoder.mid.attn_1.proj_out.weight", "decoder.up.3.block.2.conv1.weight",
        "decoder.up.0.block.0.nin_shortcut.weight", "post_quant_conv.weight",
    ]
} | {
    "cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc2.weight",
    "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
}  # fmt: skip
SD2_CHECKED = {
    UNET_PREFIX + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
    UNET_PREFIX + "input_blocks.5.1.proj_in.weight",
    UNET_PREFIX + "middle_block.1.transformer_blocks.0.ff.net.0.proj.weight",
    VAE_PREFIX + "encoder.down.1.block.0.nin_shortcut.weight",
} | {
    SD2_TEXT_PREFIX + name
    for name in [
        "transformer.resblocks.22.attn.in_proj_weight", "transformer.resblocks.0.attn.in_proj_bias",
        "transformer.resblocks.5.mlp.c_fc.weight", "transformer.resblocks.9.ln_2.bias", "ln_final.weight",
        "positional_embedding",
    ]
}  # fmt: skip


@pytest.fixture(scope="module")
def pool():
    return random_pool()


def _original_shapes(family: str, layout: str) -> dict[str, tuple[int, ...]]:
    config = family_config(family)
    modules = _build_modules(config, empty=True)
    return _expected_shapes(modules, key_tables(modules, config, layout))


def test_sd15_full_size(tmp_path, pool):
    shapes = {**_original_shapes("sd15", "sd1"), **EXTRAS}
    path = write_fake_safetensors(tmp_path / "v1-5-pruned-emaonly.safetensors", shapes, pool, filled=SD15_CHECKED)

    def stored(key):
        assert key in SD15_CHECKED
        return expected_tensor(key, shapes[key], pool)

    info = describe_checkpoint(path)
    assert (info.family, info.layout, info.cross_attention_dim, info.prediction_type) == ("sd15", "sd1", 768, None)
    with pytest.raises(HypernetFileError, match="cross-attention width 768, not family 'sd2-v'"):
        load_pipeline(path, family="sd2-v")

    pipe = load_pipeline(path, dtype=torch.float16, progress=False)
    unet, vae, text = pipe.unet, pipe.vae, pipe.text_encoder
    checks = [
        (
            unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2.to_k.weight,
            stored(UNET_PREFIX + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"),
        ),
        (unet.down_blocks[2].downsamplers[0].conv.weight, stored(UNET_PREFIX + "input_blocks.9.0.op.weight")),
        (unet.down_blocks[3].resnets[1].conv2.weight, stored(UNET_PREFIX + "input_blocks.11.0.out_layers.3.weight")),
        (unet.mid_block.resnets[1].time_emb_proj.weight, stored(UNET_PREFIX + "middle_block.2.emb_layers.1.weight")),
        (unet.up_blocks[1].upsamplers[0].conv.weight, stored(UNET_PREFIX + "output_blocks.5.2.conv.weight")),
        (unet.up_blocks[3].attentions[2].proj_out.weight, stored(UNET_PREFIX + "output_blocks.11.1.proj_out.weight")),
        (
            unet.up_blocks[3].resnets[0].conv_shortcut.weight,
            stored(UNET_PREFIX + "output_blocks.9.0.skip_connection.weight"),
        ),
        (unet.time_embedding.linear_2.weight, stored(UNET_PREFIX + "time_embed.2.weight")),
        (
            vae.encoder.mid_block.attentions[0].to_q.weight,
            stored(VAE_PREFIX + "encoder.mid.attn_1.q.weight")[:, :, 0, 0],
        ),
        (
            vae.decoder.mid_block.attentions[0].to_out[0].weight,
            stored(VAE_PREFIX + "decoder.mid.attn_1.proj_out.weight")[:, :, 0, 0],
        ),
        (vae.decoder.up_blocks[0].resnets[2].conv1.weight, stored(VAE_PREFIX + "decoder.up.3.block.2.conv1.weight")),
        (
            vae.decoder.up_blocks[3].resnets[0].conv_shortcut.weight,
            stored(VAE_PREFIX + "decoder.up.0.block.0.nin_shortcut.weight"),
        ),
        (vae.post_quant_conv.weight, stored(VAE_PREFIX + "post_quant_conv.weight")),
        (
            text.encoder.layers[11].mlp.fc2.weight,
            stored("cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc2.weight"),
        ),
        (
            text.embeddings.token_embedding.weight,
            stored("cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"),
        ),
    ]
    for index, (loaded, expected) in enumerate(checks):
        assert loaded.dtype == torch.float16 and torch.equal(loaded, expected), index
    assert pipe.tokenizer.pad_token_id == 49407
    assert type(pipe.scheduler).__name__ == "PNDMScheduler" and pipe.scheduler.config.prediction_type == "epsilon"
    assert unet.config.cross_attention_dim == 768 and unet.config.sample_size == 64
    del pipe, unet, vae, text, checks
    gc.collect()


def test_sd2_v_full_size(tmp_path, pool):
    shapes = _original_shapes("sd2-v", "sd2")
    width = 1024
    last = f"{SD2_TEXT_PREFIX}transformer.resblocks.23."
    shapes.update({
        last + "ln_1.weight": (width,), last + "ln_1.bias": (width,),
        last + "attn.in_proj_weight": (3 * width, width), last + "attn.in_proj_bias": (3 * width,),
        last + "attn.out_proj.weight": (width, width), last + "attn.out_proj.bias": (width,),
        last + "ln_2.weight": (width,), last + "ln_2.bias": (width,),
        last + "mlp.c_fc.weight": (4 * width, width), last + "mlp.c_fc.bias": (4 * width,),
        last + "mlp.c_proj.weight": (width, 4 * width), last + "mlp.c_proj.bias": (width,),
        SD2_TEXT_PREFIX + "text_projection": (width, width), SD2_TEXT_PREFIX + "logit_scale": (),
        **EXTRAS,
    })  # fmt: skip
    path = write_fake_safetensors(tmp_path / "v2-1_768-ema-pruned.safetensors", shapes, pool, filled=SD2_CHECKED)

    def stored(key):
        assert key in SD2_CHECKED
        return expected_tensor(key, shapes[key], pool)

    info = describe_checkpoint(path)
    assert (info.family, info.layout, info.cross_attention_dim, info.prediction_type) == ("sd2", "sd2", 1024, None)

    pipe = load_pipeline(path, prediction_type="v_prediction", dtype=torch.float16, progress=False)
    unet, text = pipe.unet, pipe.text_encoder
    fused = stored(SD2_TEXT_PREFIX + "transformer.resblocks.22.attn.in_proj_weight")
    fused_bias = stored(SD2_TEXT_PREFIX + "transformer.resblocks.0.attn.in_proj_bias")
    checks = [
        (
            unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2.to_k.weight,
            stored(UNET_PREFIX + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"),
        ),
        (unet.down_blocks[1].attentions[1].proj_in.weight, stored(UNET_PREFIX + "input_blocks.5.1.proj_in.weight")),
        (
            unet.mid_block.attentions[0].transformer_blocks[0].ff.net[0].proj.weight,
            stored(UNET_PREFIX + "middle_block.1.transformer_blocks.0.ff.net.0.proj.weight"),
        ),
        (text.encoder.layers[22].self_attn.q_proj.weight, fused[:width]),
        (text.encoder.layers[22].self_attn.k_proj.weight, fused[width : 2 * width]),
        (text.encoder.layers[22].self_attn.v_proj.weight, fused[2 * width :]),
        (text.encoder.layers[0].self_attn.v_proj.bias, fused_bias[2 * width :]),
        (text.encoder.layers[5].mlp.fc1.weight, stored(SD2_TEXT_PREFIX + "transformer.resblocks.5.mlp.c_fc.weight")),
        (text.encoder.layers[9].layer_norm2.bias, stored(SD2_TEXT_PREFIX + "transformer.resblocks.9.ln_2.bias")),
        (text.final_layer_norm.weight, stored(SD2_TEXT_PREFIX + "ln_final.weight")),
        (text.embeddings.position_embedding.weight, stored(SD2_TEXT_PREFIX + "positional_embedding")),
        (
            pipe.vae.encoder.down_blocks[1].resnets[0].conv_shortcut.weight,
            stored(VAE_PREFIX + "encoder.down.1.block.0.nin_shortcut.weight"),
        ),
    ]
    for index, (loaded, expected) in enumerate(checks):
        assert loaded.dtype == torch.float16 and torch.equal(loaded, expected), index
    assert len(text.encoder.layers) == 23  # SD 2 conditions on OpenCLIP's penultimate block
    assert pipe.tokenizer.pad_token_id == 0
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert unet.config.sample_size == 96 and unet.config.upcast_attention is True
    assert unet.config.attention_head_dim == [5, 10, 20, 20] and unet.config.use_linear_projection
    del pipe, unet, text, checks
    gc.collect()
