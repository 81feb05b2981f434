"""Tiny Stable-Diffusion-architecture models built in code for tests (random weights).

Attention feature sizes are all different on purpose: self-attention 32 and 64
channels, cross-attention (text width) 48, so a test can tell which layer a
hypernetwork size reaches.
"""

from pathlib import Path

import torch

TOKENIZER_DIR = Path(__file__).resolve().parents[1] / "src" / "hypernet" / "data" / "clip_tokenizer"
SELF_SIZES = (32, 64)
TEXT_WIDTH = 48


def tiny_unet(seed: int = 0):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=SELF_SIZES,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=8,
        norm_num_groups=8,
    ).eval()


def tiny_vae(seed: int = 0):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(16, 32),
        latent_channels=4,
        norm_num_groups=8,
        sample_size=16,
    ).eval()


def tiny_text_encoder(seed: int = 0, width: int = TEXT_WIDTH):
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=width,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )
    model = CLIPTextModel(config).eval()
    # A trained CLIP's final layer norm has a bias, so its output mean is not ~0; the
    # webui's emphasis mean restoration divides by that mean (0 here would give inf).
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        norm = getattr(model, "text_model", model).final_layer_norm
        norm.weight.copy_(1.0 + 0.2 * torch.randn(norm.weight.shape, generator=generator))
        norm.bias.copy_(0.3 + 0.2 * torch.randn(norm.bias.shape, generator=generator))
    return model


def tiny_tokenizer():
    from hypernet.models.tokenizer import load_clip_tokenizer

    tokenizer = load_clip_tokenizer()
    if tokenizer.model_max_length > 77:
        tokenizer.model_max_length = 77  # CLIP's length; the bare test tokenizer lacks it
    return tokenizer


def tiny_pipeline(seed: int = 0):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False)
    pipe = StableDiffusionPipeline(
        vae=tiny_vae(seed),
        text_encoder=tiny_text_encoder(seed),
        tokenizer=tiny_tokenizer(),
        unet=tiny_unet(seed),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


# A tiny SDXL-architecture pipeline. As in SDXL (2048 = 768 + 1280 text, self-attention
# 640 and 1280, no attention at the 320-channel level), the context is the two text
# encoders' widths concatenated (16 + 32 = 48), attention sits at the 32- and 64-channel
# levels and the 16-channel level has none: a "48, 32, 64" file plays "2048, 640, 1280".
SDXL_TEXT_WIDTHS = (16, 32)
SDXL_CONTEXT = sum(SDXL_TEXT_WIDTHS)
SDXL_SELF_SIZES = (32, 64)
SDXL_TIME_EMBED = 8


def tiny_sdxl_unet(seed: int = 0):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(16, *SDXL_SELF_SIZES),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 1, 2),
        cross_attention_dim=SDXL_CONTEXT,
        attention_head_dim=(2, 4, 8),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=SDXL_TIME_EMBED,
        projection_class_embeddings_input_dim=6 * SDXL_TIME_EMBED + SDXL_TEXT_WIDTHS[1],
        norm_num_groups=8,
    ).eval()


def tiny_sdxl_text_encoders(seed: int = 0):
    """(CLIP-L-like CLIPTextModel, bigG-like CLIPTextModelWithProjection), random weights."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    first = tiny_text_encoder(seed, width=SDXL_TEXT_WIDTHS[0])
    width = SDXL_TEXT_WIDTHS[1]
    torch.manual_seed(seed + 1)
    config = CLIPTextConfig(vocab_size=49408, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=3,
                            num_attention_heads=4, max_position_embeddings=77, projection_dim=width,
                            hidden_act="gelu", bos_token_id=49406, eos_token_id=49407, pad_token_id=1)
    second = CLIPTextModelWithProjection(config).eval()
    return first, second


def tiny_sdxl_pipeline(seed: int = 0):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    from hypernet.models.tokenizer import load_clip_tokenizer

    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading")
    text_encoder, text_encoder_2 = tiny_sdxl_text_encoders(seed)
    tokenizer_2 = load_clip_tokenizer(pad_with="!")
    tokenizer_2.model_max_length = 77
    pipe = StableDiffusionXLPipeline(
        vae=tiny_vae(seed),
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tiny_tokenizer(),
        tokenizer_2=tokenizer_2,
        unet=tiny_sdxl_unet(seed),
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
