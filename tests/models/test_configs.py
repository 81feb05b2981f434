"""The shipped family configs build the real SD architectures, and every key is one diffusers knows."""

from __future__ import annotations

import inspect
import json

import pytest
import torch

from hypernet.errors import HypernetConfigError, HypernetFileError
from hypernet.models.assembly import _build_modules
from hypernet.models.key_matching import key_tables
from hypernet.models.configs import FAMILIES, FAMILY_LAYOUT, family_config, family_directory, read_config_directory

# Parameter counts of the public SD checkpoints' UNet, VAE and (used part of the) text encoder.
PARAMETERS = {
    "sd15": (859_520_964, 83_653_863, 123_060_480),
    "sd2": (865_910_724, 83_653_863, 340_387_840),
}


def _init_parameters(cls) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters) - {"self", "args", "kwargs"}


@pytest.mark.parametrize("family", FAMILIES)
def test_keys_are_known_to_diffusers(family):
    import diffusers
    from transformers import CLIPTextConfig

    directory = family_directory(family)
    for relative, cls in [
        ("unet/config.json", diffusers.UNet2DConditionModel),
        ("vae/config.json", diffusers.AutoencoderKL),
    ]:
        config = json.loads((directory / relative).read_text())
        unknown = {k for k in config if not k.startswith("_")} - _init_parameters(cls)
        assert not unknown, f"{family}/{relative}: {unknown}"
    scheduler = json.loads((directory / "scheduler/scheduler_config.json").read_text())
    cls = getattr(diffusers, scheduler["_class_name"])
    assert not ({k for k in scheduler if not k.startswith("_")} - _init_parameters(cls))
    text = json.loads((directory / "text_encoder/config.json").read_text())
    built = CLIPTextConfig.from_dict(text)
    for key, value in text.items():
        if key not in ("architectures", "model_type"):
            assert getattr(built, key) == value, key
    index = json.loads((directory / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline" and index["scheduler"][1] == scheduler["_class_name"]


@pytest.mark.parametrize("family", FAMILIES)
def test_family_builds_the_public_architecture(family):
    config = family_config(family)
    modules = _build_modules(config, empty=True)
    counts = tuple(sum(p.numel() for p in modules[name].parameters()) for name in ("unet", "vae", "text_encoder"))
    assert counts == PARAMETERS[family.removesuffix("-v")]
    assert all(p.device.type == "meta" for p in modules["unet"].parameters())
    pairs = key_tables(modules, config, FAMILY_LAYOUT[family])
    originals = [pair.original for pair in pairs]
    assert len(originals) == len(set(originals))


def test_family_settings():
    sd15, sd2, sd2v = (family_config(name) for name in FAMILIES)
    assert sd15.unet["cross_attention_dim"] == 768 and sd15.pad_with == "eos"
    assert sd15.text_encoder["hidden_act"] == "quick_gelu"
    assert sd2.unet["cross_attention_dim"] == 1024 and sd2.unet["use_linear_projection"] is True
    assert sd2.unet["attention_head_dim"] == [5, 10, 20, 20] and sd2.pad_with == "!"
    assert sd2.text_encoder["num_hidden_layers"] == 23  # OpenCLIP ViT-H has 24; SD 2 uses the penultimate
    assert sd2.scheduler["prediction_type"] == "epsilon"
    assert sd2v.scheduler["prediction_type"] == "v_prediction" and sd2v.unet["sample_size"] == 96


def test_unknown_family_and_bad_folder(tmp_path):
    with pytest.raises(HypernetConfigError, match="sd15"):
        family_directory("sdxl")
    with pytest.raises(HypernetFileError, match="unet/config.json"):
        read_config_directory(tmp_path)
    (tmp_path / "x").write_text("not a folder")
    with pytest.raises(HypernetFileError, match="not a folder"):
        read_config_directory(tmp_path / "x")


def test_scheduler_must_be_a_known_class(tmp_path):
    import shutil

    shutil.copytree(family_directory("sd15"), tmp_path / "cfg")
    path = tmp_path / "cfg" / "scheduler" / "scheduler_config.json"
    config = json.loads(path.read_text())
    config["_class_name"] = "os.system"
    path.write_text(json.dumps(config))
    with pytest.raises(HypernetFileError, match="scheduler class"):
        read_config_directory(tmp_path / "cfg")


def test_meta_build_is_cheap_and_does_not_touch_global_rng():
    state = torch.random.get_rng_state()
    _build_modules(family_config("sd15"), empty=True)
    assert torch.equal(state, torch.random.get_rng_state())
