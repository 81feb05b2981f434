"""Pipeline configurations: the shipped families, config folders, and configs read off shapes.

A single-file checkpoint stores weights but not the settings that build the modules
(block types, head counts, scheduler). They come from, in this order: a config folder the
caller names; the configs hypernet's own export embeds in the file's metadata; the
shipped family config whose shapes the file matches; or, for files of other sizes (tiny
test models, unusual fine-tunes), a config read off the tensor shapes, with the settings
that shapes cannot tell (attention heads, GroupNorm groups, activation, scheduler) taken
from the nearest family.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import HypernetConfigError, HypernetFileError
from ..fileio import read_json_object
from .layout import SD1_TEXT_PREFIX, SD2_TEXT_PREFIX, UNET_PREFIX, VAE_PREFIX

CONFIG_ROOT = Path(__file__).resolve().parent.parent / "data" / "configs"
FAMILIES = ("sd15", "sd2", "sd2-v")
FAMILY_LAYOUT = {"sd15": "sd1", "sd2": "sd2", "sd2-v": "sd2"}
PREDICTION_TYPES = ("epsilon", "v_prediction")
COMPONENT_FILES = {
    "unet": "unet/config.json",
    "vae": "vae/config.json",
    "text_encoder": "text_encoder/config.json",
    "scheduler": "scheduler/scheduler_config.json",
}
# Schedulers a config may name: diffusers classes that drive StableDiffusionPipeline.
SCHEDULER_CLASSES = (
    "DDIMScheduler",
    "DDPMScheduler",
    "PNDMScheduler",
    "LMSDiscreteScheduler",
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "HeunDiscreteScheduler",
    "DPMSolverMultistepScheduler",
    "DPMSolverSinglestepScheduler",
    "KDPM2DiscreteScheduler",
    "KDPM2AncestralDiscreteScheduler",
    "DEISMultistepScheduler",
    "UniPCMultistepScheduler",
)


@dataclass
class PipelineConfig:
    """The configs of the four configured components and the tokenizer's padding."""

    unet: dict
    vae: dict
    text_encoder: dict
    scheduler: dict
    pad_with: str = "eos"
    source: str = field(default="", compare=False)


def check_family(family: str) -> str:
    if family not in FAMILIES:
        raise HypernetConfigError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")
    return family


def check_prediction_type(prediction_type: str | None) -> str | None:
    if prediction_type is not None and prediction_type not in PREDICTION_TYPES:
        raise HypernetConfigError(
            f"unknown prediction_type {prediction_type!r}; expected one of {', '.join(PREDICTION_TYPES)}"
        )
    return prediction_type


def family_directory(family: str) -> Path:
    """The shipped diffusers config folder of a family ("sd15", "sd2", "sd2-v")."""
    return CONFIG_ROOT / check_family(family)


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise HypernetFileError(path, "missing: a pipeline config folder needs this file")
    return read_json_object(path)


def tokenizer_pad_with(directory: Path) -> str:
    """ "!" when the folder's tokenizer pads like SD 2.x, else "eos"."""
    for name in ("tokenizer/tokenizer_config.json", "tokenizer/special_tokens_map.json"):
        path = directory / name
        if path.is_file():
            pad = _read_json(path).get("pad_token")
            if isinstance(pad, dict):
                pad = pad.get("content")
            if pad == "!":
                return "!"
            if pad is not None:
                return "eos"
    return "eos"


def read_config_directory(directory: str | Path) -> PipelineConfig:
    """Reads a diffusers pipeline folder's component configs (weights are not needed)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise HypernetFileError(directory, "not a folder: expected a diffusers pipeline config folder")
    configs = {name: _read_json(directory / relative) for name, relative in COMPONENT_FILES.items()}
    result = PipelineConfig(**configs, pad_with=tokenizer_pad_with(directory), source=str(directory))
    check_config(result, directory)
    return result


def family_config(family: str) -> PipelineConfig:
    return read_config_directory(family_directory(family))


def check_config(config: PipelineConfig, where) -> None:
    """Refuses configs this loader would build wrongly, naming the setting."""
    expected = {"unet": "UNet2DConditionModel", "vae": "AutoencoderKL"}
    for component, class_name in expected.items():
        found = getattr(config, component).get("_class_name", class_name)
        if found != class_name:
            raise HypernetFileError(where, f"the {component} config is for {found}, expected {class_name}")
    scheduler = config.scheduler.get("_class_name")
    if scheduler not in SCHEDULER_CLASSES:
        raise HypernetFileError(
            where, f"scheduler class {scheduler!r} is not one of the supported {', '.join(SCHEDULER_CLASSES)}"
        )
    check_prediction_type(config.scheduler.get("prediction_type", "epsilon"))
    if config.pad_with not in ("eos", "!"):
        raise HypernetFileError(where, f"tokenizer padding {config.pad_with!r} is not 'eos' or '!'")


def matching_family(config: PipelineConfig) -> str | None:
    """The shipped family whose every setting ``config`` shares (extra defaults aside)."""
    for name in FAMILIES:
        shipped = family_config(name)
        if config.pad_with != shipped.pad_with:
            continue
        if (
            all(
                _normalised(getattr(config, part).get(key)) == _normalised(value)
                for part in ("unet", "vae", "text_encoder")
                for key, value in getattr(shipped, part).items()
                if not key.startswith("_") and key not in ("architectures", "model_type")
            )
            and config.scheduler.get("prediction_type", "epsilon") == shipped.scheduler["prediction_type"]
        ):
            return name
    return None


def _normalised(value):
    return list(value) if isinstance(value, tuple) else value


# --- configs from shapes ------------------------------------------------------------------------

ShapeOf = Callable[[str], tuple[int, ...]]


def _indices(keys, prefix: str) -> list[int]:
    found = set()
    for key in keys:
        if key.startswith(prefix):
            head = key[len(prefix) :].split(".", 1)[0]
            if head.isdigit():
                found.add(int(head))
    return sorted(found)


def _groups(channels: list[int], preferred: int) -> int:
    """GroupNorm group count: the family's unless some width is not divisible by it."""
    common = 0
    for width in channels:
        common = math.gcd(common, width)
    if common % preferred == 0:
        return preferred
    return max(d for d in range(1, min(preferred, common) + 1) if common % d == 0)


def _heads(width: int, template_width: int, template_heads: int) -> int:
    if width == template_width:
        return template_heads
    head_size = template_width // template_heads
    if width % head_size == 0:
        return max(1, width // head_size)
    return 1


def infer_unet_config(keys, shape_of: ShapeOf, template: Mapping) -> dict:
    p = UNET_PREFIX
    conv_in = shape_of(p + "input_blocks.0.0.weight")
    config = dict(template)
    levels: list[dict] = [{"resnets": 0, "attention": False, "width": None, "transformer_layers": 1}]
    for index in _indices(keys, p + "input_blocks.")[1:]:
        block = f"{p}input_blocks.{index}."
        if block + "0.op.weight" in keys:
            levels.append({"resnets": 0, "attention": False, "width": None, "transformer_layers": 1})
            continue
        level = levels[-1]
        level["resnets"] += 1
        level["width"] = shape_of(block + "0.out_layers.3.weight")[0]
        if block + "1.proj_in.weight" in keys:
            level["attention"] = True
            level["transformer_layers"] = len(_indices(keys, block + "1.transformer_blocks."))
    if any(level["width"] is None for level in levels):
        raise ValueError("a UNet level without resnets")
    widths = [level["width"] for level in levels]
    attention_levels = [level["attention"] for level in levels]
    output_attention = []
    up_start = 0
    for level in reversed(levels):
        output_attention.append(f"{p}output_blocks.{up_start}.1.proj_in.weight" in keys)
        up_start += level["resnets"] + 1
    probe = next((k for k in keys if k.startswith(p) and k.endswith("attn2.to_k.weight")), None)
    if probe is None:
        raise ValueError("no cross-attention layer (attn2.to_k.weight)")
    proj_in = next(k for k in keys if k.startswith(p) and k.endswith("proj_in.weight"))
    template_heads = template["attention_head_dim"]
    if isinstance(template_heads, (list, tuple)):
        head_size = template["block_out_channels"][0] // template_heads[0]
        heads = [max(1, width // head_size) if width % head_size == 0 else 1 for width in widths]
    else:
        heads = template_heads if all(width % template_heads == 0 for width in widths) else 1
    resnets = [level["resnets"] for level in levels]
    transformer_layers = [level["transformer_layers"] for level in levels]
    config.update(
        in_channels=conv_in[1],
        out_channels=shape_of(p + "out.2.weight")[0],
        block_out_channels=widths,
        layers_per_block=resnets[0] if len(set(resnets)) == 1 else resnets,
        down_block_types=["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention_levels],
        up_block_types=["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in output_attention],
        cross_attention_dim=shape_of(probe)[1],
        use_linear_projection=len(shape_of(proj_in)) == 2,
        attention_head_dim=heads,
        norm_num_groups=_groups(widths, template.get("norm_num_groups", 32)),
        transformer_layers_per_block=transformer_layers[0] if len(set(transformer_layers)) == 1 else transformer_layers,
    )
    return config


def infer_vae_config(keys, shape_of: ShapeOf, template: Mapping) -> dict:
    p = VAE_PREFIX
    levels = _indices(keys, p + "encoder.down.")
    if not levels:
        raise ValueError("no VAE encoder levels (encoder.down.N)")
    widths = [shape_of(f"{p}encoder.down.{level}.block.0.conv2.weight")[0] for level in levels]
    config = dict(template)
    config.update(
        in_channels=shape_of(p + "encoder.conv_in.weight")[1],
        out_channels=shape_of(p + "decoder.conv_out.weight")[0],
        block_out_channels=widths,
        down_block_types=["DownEncoderBlock2D"] * len(widths),
        up_block_types=["UpDecoderBlock2D"] * len(widths),
        layers_per_block=len(_indices(keys, p + "encoder.down.0.block.")),
        latent_channels=shape_of(p + "post_quant_conv.weight")[0],
        norm_num_groups=_groups(widths, template.get("norm_num_groups", 32)),
        mid_block_add_attention=p + "encoder.mid.attn_1.q.weight" in keys,
    )
    return config


def infer_text_config(keys, shape_of: ShapeOf, layout: str, template: Mapping) -> dict:
    if layout == "sd1":
        p = SD1_TEXT_PREFIX
        vocab, width = shape_of(p + "embeddings.token_embedding.weight")
        positions = shape_of(p + "embeddings.position_embedding.weight")[0]
        layers = len(_indices(keys, p + "encoder.layers."))
        inner = shape_of(p + "encoder.layers.0.mlp.fc1.weight")[0]
    else:
        p = SD2_TEXT_PREFIX
        vocab, width = shape_of(p + "token_embedding.weight")
        positions = shape_of(p + "positional_embedding")[0]
        layers = len(_indices(keys, p + "transformer.resblocks.")) - 1  # SD 2 reads the penultimate block
        inner = shape_of(p + "transformer.resblocks.0.mlp.c_fc.weight")[0]
    if layers < 1:
        raise ValueError("no text encoder layers")
    config = dict(template)
    config.update(
        vocab_size=vocab,
        hidden_size=width,
        max_position_embeddings=positions,
        num_hidden_layers=layers,
        intermediate_size=inner,
        num_attention_heads=_heads(width, template["hidden_size"], template["num_attention_heads"]),
        projection_dim=template["projection_dim"] if width == template["hidden_size"] else width,
    )
    return config


def infer_config(keys, shape_of: ShapeOf, layout: str, template: PipelineConfig) -> PipelineConfig:
    """A config with every size read off the tensor shapes; the rest from ``template``."""
    keys = set(keys)
    try:
        return PipelineConfig(
            unet=infer_unet_config(keys, shape_of, template.unet),
            vae=infer_vae_config(keys, shape_of, template.vae),
            text_encoder=infer_text_config(keys, shape_of, layout, template.text_encoder),
            scheduler=dict(template.scheduler),
            pad_with=template.pad_with,
            source=f"shapes of the file ({template.source} settings)",
        )
    except (KeyError, ValueError, IndexError, StopIteration) as error:
        raise ValueError(f"cannot read a configuration off the tensor shapes ({error})") from None


# --- configs embedded in a file's metadata ------------------------------------------------------

METADATA_PREFIX = "hypernet."


def config_to_metadata(config: PipelineConfig) -> dict[str, str]:
    return {
        METADATA_PREFIX + "unet_config": json.dumps(config.unet, sort_keys=True),
        METADATA_PREFIX + "vae_config": json.dumps(config.vae, sort_keys=True),
        METADATA_PREFIX + "text_encoder_config": json.dumps(config.text_encoder, sort_keys=True),
        METADATA_PREFIX + "scheduler_config": json.dumps(config.scheduler, sort_keys=True),
        METADATA_PREFIX + "pad_with": config.pad_with,
    }


def config_from_metadata(metadata: Mapping[str, str], where) -> PipelineConfig | None:
    names = ("unet", "vae", "text_encoder", "scheduler")
    if not all(f"{METADATA_PREFIX}{name}_config" in metadata for name in names):
        return None
    parsed = {}
    for name in names:
        key = f"{METADATA_PREFIX}{name}_config"
        try:
            value = json.loads(metadata[key])
        except (TypeError, json.JSONDecodeError) as error:
            raise HypernetFileError(where, f"metadata is not valid JSON ({error})", key=key) from None
        if not isinstance(value, dict):
            raise HypernetFileError(where, "metadata should hold a JSON object", key=key)
        parsed[name] = value
    config = PipelineConfig(
        **parsed, pad_with=metadata.get(METADATA_PREFIX + "pad_with", "eos"), source="the file's metadata"
    )
    check_config(config, where)
    return config
