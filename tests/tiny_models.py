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
