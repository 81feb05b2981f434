"""The toy Stable Diffusion: the very classes of SD 1.x (UNet2DConditionModel with self-
and cross-attention at two resolutions, AutoencoderKL with 8x downsampling,
CLIPTextModel with the real CLIP tokenizer and its 49408-token vocabulary), scaled down
to 64x64 pictures so that a 20-step picture takes well under a second on two CPU cores.

Attention feature sizes are chosen to differ: self-attention sees 32 and 64 channels,
cross-attention sees the 80-wide text encoder output. So a hypernetwork with sizes
(80, 32, 64) exercises both kinds of attention, as SD's (768, 320, 640, 1280) does.
"""

from __future__ import annotations

import contextlib
import json
from importlib import resources
from pathlib import Path

import torch

from ..errors import HypernetConfigError, HypernetFileError

IMAGE_SIZE = 64
TEXT_WIDTH = 80
SELF_ATTENTION_SIZES = (32, 64)
HYPERNETWORK_SIZES = (TEXT_WIDTH, *SELF_ATTENTION_SIZES)

# SD 1.x's noise schedule, so every stock diffusers scheduler works unchanged.
NOISE_SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
}

UNET_CONFIG = {
    "sample_size": IMAGE_SIZE // 4,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 1,
    "block_out_channels": SELF_ATTENTION_SIZES,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "cross_attention_dim": TEXT_WIDTH,
    # diffusers' legacy name: this is the number of heads, as in SD 1.x. Two heads (16 and
    # 32 channels each) train ~25% faster on a CPU than four narrow ones.
    "attention_head_dim": 2,
    "norm_num_groups": 8,
}

VAE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 3,
    "up_block_types": ("UpDecoderBlock2D",) * 3,
    "block_out_channels": (16, 32, 64),
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 8,
    "sample_size": IMAGE_SIZE,
    "scaling_factor": 1.0,  # replaced by 1 / std of the training latents after VAE training
}

TEXT_CONFIG = {
    "vocab_size": 49408,
    "hidden_size": TEXT_WIDTH,
    "intermediate_size": TEXT_WIDTH * 4,
    "projection_dim": TEXT_WIDTH,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 49407,
}


def shipped_model_folder() -> Path:
    """The diffusers-layout folder inside the package that holds the trained weights."""
    return Path(str(resources.files("hypernet") / "data" / "toy"))


def clip_tokenizer_files() -> tuple[Path, Path]:
    folder = Path(str(resources.files("hypernet") / "data" / "clip_tokenizer"))
    return folder / "vocab.json", folder / "merges.txt"


def load_tokenizer():
    """The project's CLIP tokenizer (the ftfy-correct wrapper when it exists)."""
    try:
        from ..models.tokenizer import load_clip_tokenizer
    except ImportError:
        from transformers import CLIPTokenizer

        vocab, merges = clip_tokenizer_files()
        return CLIPTokenizer(str(vocab), str(merges), pad_token="<|endoftext|>", model_max_length=77)
    return load_clip_tokenizer()


@contextlib.contextmanager
def seeded(seed: int):
    """torch's global generators seeded with `seed` inside the block (for library code that
    draws from them: module initialisation, dropout, `posterior.sample()`), and given back
    to the caller exactly as they were afterwards."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def build_components(seed: int = 0) -> dict:
    """Freshly initialised (untrained) components, deterministic in `seed`."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with seeded(seed):
        vae = AutoencoderKL(**VAE_CONFIG)
    with seeded(seed + 1):
        unet = UNet2DConditionModel(**UNET_CONFIG)
    with seeded(seed + 2):
        text_encoder = CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG))
    return {
        "vae": vae,
        "unet": unet,
        "text_encoder": text_encoder,
        "tokenizer": load_tokenizer(),
        "scheduler": make_scheduler("ddim"),
    }


def _scheduler_table() -> dict:
    from diffusers import (
        DDIMScheduler,
        DDPMScheduler,
        DPMSolverMultistepScheduler,
        EulerAncestralDiscreteScheduler,
        EulerDiscreteScheduler,
        PNDMScheduler,
    )

    return {
        "ddim": lambda: DDIMScheduler(**NOISE_SCHEDULE, clip_sample=False, set_alpha_to_one=False, steps_offset=1),
        "ddpm": lambda: DDPMScheduler(**NOISE_SCHEDULE, clip_sample=False),
        "euler": lambda: EulerDiscreteScheduler(**NOISE_SCHEDULE, steps_offset=1),
        "euler_a": lambda: EulerAncestralDiscreteScheduler(**NOISE_SCHEDULE, steps_offset=1),
        "pndm": lambda: PNDMScheduler(**NOISE_SCHEDULE, skip_prk_steps=True, steps_offset=1),
        "dpmsolver": lambda: DPMSolverMultistepScheduler(**NOISE_SCHEDULE, steps_offset=1),
    }


def make_scheduler(name: str = "ddim"):
    table = _scheduler_table()
    if name not in table:
        raise HypernetConfigError(f"unknown scheduler {name!r}; valid schedulers: {', '.join(table)}")
    return table[name]()


def assemble_pipeline(components: dict):
    """A StableDiffusionPipeline over the given components (no safety checker: the
    toy world has nothing to check)."""
    from ..quiet import resolve_image_processors_quietly

    resolve_image_processors_quietly()  # before diffusers' pipeline module names them
    from diffusers import StableDiffusionPipeline

    pipeline = StableDiffusionPipeline(
        vae=components["vae"],
        text_encoder=components["text_encoder"],
        tokenizer=components["tokenizer"],
        unet=components["unet"],
        scheduler=components["scheduler"],
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def save_pipeline(pipeline, folder: str | Path) -> Path:
    """Writes the pipeline in diffusers folder layout with fp16 weights; the pipeline
    itself is left in its dtype."""
    import copy

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    half = {name: copy.deepcopy(getattr(pipeline, name)).to(torch.float16) for name in ("vae", "unet", "text_encoder")}
    components = {"tokenizer": pipeline.tokenizer, "scheduler": pipeline.scheduler, **half}
    assemble_pipeline(components).save_pretrained(str(folder), safe_serialization=True)
    _write_tokenizer_folder(folder)
    return folder


def _write_tokenizer_folder(folder: Path) -> None:
    """The tokenizer as plain transformers `CLIPTokenizer` files (vocab + merges, half the
    size of a tokenizer.json), so diffusers alone can load the folder."""
    import shutil

    tokenizer_folder = folder / "tokenizer"
    if tokenizer_folder.exists():
        shutil.rmtree(tokenizer_folder)
    tokenizer_folder.mkdir()
    for source in clip_tokenizer_files():
        shutil.copyfile(source, tokenizer_folder / source.name)
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "model_max_length": 77,
    }
    (tokenizer_folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text(encoding="utf-8"))
    index["tokenizer"] = ["transformers", "CLIPTokenizer"]
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def load_toy_pipeline(dtype: torch.dtype = torch.float32, scheduler: str = "ddim", folder: str | Path | None = None):
    """The embedded toy model as a StableDiffusionPipeline, fully offline. Weights are
    stored in fp16 and loaded as `dtype` (fp32 on a CPU: fp16 convolutions are slow there).

    Each component is built from its config and its weights loaded strictly, rather than
    through `from_pretrained`: the same tensors (tested), in a third of the time, and
    without the loading progress bars a 12 MB model does not need."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from safetensors.torch import load_file
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder) if folder is not None else shipped_model_folder()
    if not (folder / "model_index.json").is_file():
        raise HypernetFileError(folder, "no model_index.json; train the toy model with `hypernet toy train-base`")

    def weights(module, path: Path):
        try:
            module.load_state_dict(load_file(str(path)), strict=True)
        except (OSError, RuntimeError) as error:
            raise HypernetFileError(path, f"cannot load the toy model's weights ({str(error).splitlines()[0]})") from None
        return torch.nn.Module.to(module, dtype).eval()  # diffusers' own .to() warns about fp32 modules it has none of

    unet = weights(UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(folder / "unet"))),
                   folder / "unet" / "diffusion_pytorch_model.safetensors")
    vae = weights(AutoencoderKL.from_config(AutoencoderKL.load_config(str(folder / "vae"))),
                  folder / "vae" / "diffusion_pytorch_model.safetensors")
    text_encoder = weights(CLIPTextModel(CLIPTextConfig.from_pretrained(str(folder / "text_encoder"))),
                           folder / "text_encoder" / "model.safetensors")
    components = {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": load_tokenizer(),
                  "scheduler": DDIMScheduler.from_pretrained(str(folder), subfolder="scheduler")}
    pipeline = assemble_pipeline(components)
    if scheduler != "ddim":
        pipeline.scheduler = make_scheduler(scheduler)
    return pipeline


def weight_bytes(folder: str | Path | None = None) -> dict[str, int]:
    """Size of each component's weight files in a saved folder."""
    folder = Path(folder) if folder is not None else shipped_model_folder()
    sizes: dict[str, int] = {}
    for path in sorted(folder.rglob("*.safetensors")):
        component = path.parent.name if path.parent != folder else path.stem
        sizes[component] = sizes.get(component, 0) + path.stat().st_size
    return sizes


def export_toy_single_file(path: str | Path, folder: str | Path | None = None) -> Path:
    """The toy model as one webui/CompVis-layout checkpoint, through the project's
    single-file exporter (`hypernet.models.export`)."""
    try:
        from ..models.export import export_single_file
    except ImportError as error:
        raise HypernetConfigError(
            f"the single-file exporter (hypernet.models.export) is not available ({error}); "
            "it is needed to write the webui layout"
        ) from None
    pipeline = load_toy_pipeline(folder=folder)
    result = export_single_file(pipeline, path)
    return Path(result) if result is not None else Path(path)
