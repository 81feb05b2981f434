"""Single files and folders load offline; bad, unsafe and unknown files are refused by name."""

from __future__ import annotations

import json
import os
import sys
import types

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from hypernet.errors import HypernetError, HypernetFileError
from hypernet.models import describe_checkpoint, export_single_file, guess_prediction_type, load_pipeline
from hypernet.models.checkpoint import pipeline_from_config

from .tiny import build_pipeline, states, tiny_config, write_config_folder


@pytest.fixture(scope="module")
def sd1_pipe():
    return build_pipeline(tiny_config("sd1"), seed=0)


@pytest.fixture(scope="module")
def sd2_pipe():
    return build_pipeline(tiny_config("sd2"), seed=1, prediction_type="v_prediction")


@pytest.fixture(scope="module")
def sd1_file(sd1_pipe, tmp_path_factory):
    return export_single_file(sd1_pipe, tmp_path_factory.mktemp("sd1") / "tiny.safetensors", dtype=torch.float32)


def _assert_same_weights(a, b, atol=0.0):
    for name, state in states(a).items():
        other = states(b)[name]
        assert state.keys() == other.keys(), name
        for key, value in state.items():
            assert other[key].dtype == value.dtype
            if atol:
                torch.testing.assert_close(other[key].float(), value.float(), atol=atol, rtol=0)
            else:
                assert torch.equal(other[key], value), (name, key)


def _strip_metadata(path, target):
    save_file(load_file(str(path)), str(target))
    return target


# --- round trips ---------------------------------------------------------------------------


def test_round_trip_sd1_exact(sd1_pipe, sd1_file):
    loaded = load_pipeline(sd1_file)
    _assert_same_weights(sd1_pipe, loaded)
    assert loaded.tokenizer.pad_token_id == 49407
    assert loaded.scheduler.config.prediction_type == "epsilon"
    assert dict(loaded.unet.config)["attention_head_dim"] == 2


def test_round_trip_sd2_fp16(sd2_pipe, tmp_path):
    path = export_single_file(sd2_pipe, tmp_path / "tiny2.safetensors")  # fp16 by default
    with safe_open(str(path), framework="pt") as handle:
        keys = set(handle.keys())
        assert handle.get_tensor("model.diffusion_model.out.2.weight").dtype == torch.float16
    assert "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight" in keys
    assert "cond_stage_model.model.transformer.resblocks.2.attn.in_proj_weight" in keys  # unused identity block
    loaded = load_pipeline(path)
    expected = build_pipeline(tiny_config("sd2"), seed=1)
    for module in (expected.unet, expected.vae, expected.text_encoder):
        module.to(torch.float16).to(torch.float32)  # what fp16 storage keeps
    _assert_same_weights(expected, loaded)
    assert loaded.tokenizer.pad_token_id == 0
    assert loaded.scheduler.config.prediction_type == "v_prediction"


def test_text_encoder_keys_without_text_model_level(sd1_pipe, sd1_file, tmp_path):
    # Files saved with transformers < 4.21 lack the "text_model." level.
    old = {
        k.replace("cond_stage_model.transformer.text_model.", "cond_stage_model.transformer."): v
        for k, v in load_file(str(sd1_file)).items()
    }
    path = tmp_path / "old.safetensors"
    with safe_open(str(sd1_file), framework="pt") as handle:
        save_file(old, str(path), metadata=handle.metadata())
    _assert_same_weights(sd1_pipe, load_pipeline(path))


def test_implausible_metadata_is_refused(sd1_file, tmp_path):
    with safe_open(str(sd1_file), framework="pt") as handle:
        metadata = dict(handle.metadata())
    config = json.loads(metadata["hypernet.text_encoder_config"])
    config["num_hidden_layers"] = 10**9
    metadata["hypernet.text_encoder_config"] = json.dumps(config)
    path = tmp_path / "odd.safetensors"
    save_file(load_file(str(sd1_file)), str(path), metadata=metadata)
    with pytest.raises(HypernetFileError, match=r"odd\.safetensors: the configuration in its metadata"):
        load_pipeline(path)


def test_loaded_pipeline_generates(sd1_file):
    pipe = load_pipeline(sd1_file)
    image = pipe("a cat", num_inference_steps=2, height=32, width=32, output_type="np", guidance_scale=1.0).images
    assert image.shape == (1, 32, 32, 3)


def test_without_metadata_config_is_read_off_shapes(sd1_pipe, sd1_file, tmp_path):
    bare = _strip_metadata(sd1_file, tmp_path / "bare.safetensors")
    info = describe_checkpoint(bare)
    assert info.family is None and info.layout == "sd1" and info.cross_attention_dim == 32
    loaded = load_pipeline(bare)
    _assert_same_weights(sd1_pipe, loaded)
    config = loaded.unet.config
    assert list(config.block_out_channels) == [32, 64] and config.layers_per_block == 2
    assert list(config.down_block_types) == ["CrossAttnDownBlock2D", "DownBlock2D"]
    assert loaded.vae.config.norm_num_groups == 32  # not in the file: the family's value


def test_config_folder_overrides(sd1_pipe, sd1_file, tmp_path):
    config = tiny_config("sd1")
    config.vae["norm_num_groups"] = 8  # cannot be read off shapes
    write_config_folder(config, tmp_path / "config")
    pipe = build_pipeline(config, seed=3)
    bare = _strip_metadata(
        export_single_file(pipe, tmp_path / "g8.safetensors", torch.float32), tmp_path / "bare.safetensors"
    )
    loaded = load_pipeline(bare, config=tmp_path / "config")
    _assert_same_weights(pipe, loaded)
    assert loaded.vae.config.norm_num_groups == 8
    config.unet["cross_attention_dim"] = 48
    write_config_folder(config, tmp_path / "wrong")
    with pytest.raises(
        HypernetFileError, match=r"bare\.safetensors: does not match the configuration from .*wrong.*attn2"
    ):
        load_pipeline(bare, config=tmp_path / "wrong")


def test_ckpt_with_lightning_globals_loads(sd1_pipe, sd1_file, tmp_path, monkeypatch):
    # Fake Lightning modules exist only while saving; loading never imports anything.
    module = types.ModuleType("pytorch_lightning.callbacks.model_checkpoint")

    class ModelCheckpoint:
        def __init__(self):
            self.monitor = None
            self.best_model_path = "/somewhere/last.ckpt"

    ModelCheckpoint.__module__, ModelCheckpoint.__qualname__ = module.__name__, "ModelCheckpoint"
    module.ModelCheckpoint = ModelCheckpoint
    parsing = types.ModuleType("pytorch_lightning.utilities.parsing")

    class AttributeDict(dict):
        pass

    AttributeDict.__module__, AttributeDict.__qualname__ = parsing.__name__, "AttributeDict"
    parsing.AttributeDict = AttributeDict
    for name, value in [
        ("pytorch_lightning", types.ModuleType("pytorch_lightning")),
        ("pytorch_lightning.callbacks", types.ModuleType("pytorch_lightning.callbacks")),
        ("pytorch_lightning.utilities", types.ModuleType("pytorch_lightning.utilities")),
        (module.__name__, module),
        (parsing.__name__, parsing),
    ]:
        monkeypatch.setitem(sys.modules, name, value)
    import numpy

    checkpoint = {
        "state_dict": load_file(str(sd1_file)),
        "epoch": 6,
        "global_step": 470000,
        "pytorch-lightning_version": "1.4.2",
        "callbacks": {ModelCheckpoint: {"best_model_score": None}, "instance": ModelCheckpoint()},
        "hyper_parameters": AttributeDict(lr=1e-4, name="sd"),
        "score": numpy.float64(0.25),
    }
    path = tmp_path / "model.ckpt"
    torch.save(checkpoint, path)
    for name in ("pytorch_lightning", module.__name__, parsing.__name__):
        monkeypatch.delitem(sys.modules, name)
    _assert_same_weights(sd1_pipe, load_pipeline(path))
    from hypernet.models.safe_pickle import InertRecord, load_torch_file

    loaded = load_torch_file(path)
    assert loaded["hyper_parameters"] == {"lr": 1e-4, "name": "sd"} and loaded["score"] == 0.25
    assert isinstance(loaded["callbacks"]["instance"], InertRecord)
    assert loaded["callbacks"]["instance"].state["best_model_path"] == "/somewhere/last.ckpt"


def test_ckpt_without_state_dict_wrapper(sd1_pipe, sd1_file, tmp_path):
    path = tmp_path / "flat.pt"
    torch.save(load_file(str(sd1_file)), path)
    _assert_same_weights(sd1_pipe, load_pipeline(path))


class _Exploit:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_ckpt_with_code_is_refused_and_nothing_runs(sd1_file, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": load_file(str(sd1_file)), "x": _Exploit(f"touch {marker}")}, path)
    with pytest.raises(HypernetFileError, match=r"evil\.ckpt.*refused.*system") as caught:
        load_pipeline(path)
    assert "safetensors" in str(caught.value)
    assert not marker.exists()


def test_unknown_class_in_pickle_is_refused(tmp_path):
    path = tmp_path / "odd.pt"
    torch.save({"state_dict": {}, "thing": _Exploit("true").__class__}, path)
    with pytest.raises(HypernetFileError, match=r"odd\.pt.*_Exploit"):
        load_pipeline(path)


@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_truncated_files(sd1_file, tmp_path, keep):
    data = sd1_file.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(HypernetFileError, match=r"cut\.safetensors.*truncated or corrupt"):
        load_pipeline(cut)


def test_truncated_ckpt(sd1_file, tmp_path):
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": load_file(str(sd1_file))}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(HypernetFileError, match=r"model\.ckpt.*truncated or corrupt"):
        load_pipeline(path)


def test_missing_tensor_is_named(sd1_file, tmp_path):
    tensors = load_file(str(sd1_file))
    del tensors["model.diffusion_model.out.2.bias"]
    path = tmp_path / "partial.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(
        HypernetFileError, match=r"partial\.safetensors.*missing tensor model\.diffusion_model\.out\.2\.bias"
    ):
        load_pipeline(path)


UNKNOWN_FILES = {
    "sdxl": (
        {
            "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight": torch.zeros(2),
            "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3),
        },
        "SDXL",
    ),
    "lora": ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 320)}, "LoRA"),
    "random": ({"foo": torch.zeros(3), "bar.weight": torch.zeros(2, 2)}, "no UNet found"),
    "unet-only": (
        {"conv_in.weight": torch.zeros(320, 4, 3, 3), "down_blocks.0.resnets.0.conv1.weight": torch.zeros(1)},
        "diffusers pipeline folder",
    ),
    "vae-only": ({"encoder.down.0.block.0.conv1.weight": torch.zeros(1)}, "stand-alone VAE"),
    "inpainting": (
        {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 9, 3, 3)},
        "takes 9 input channels.*only 4-channel text-to-image",
    ),
    "empty-dict": ({}, "holds no tensors"),
}


@pytest.mark.parametrize("kind", sorted(UNKNOWN_FILES))
def test_unknown_checkpoints_are_refused(tmp_path, kind):
    tensors, message = UNKNOWN_FILES[kind]
    path = tmp_path / f"{kind}.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(HypernetFileError, match=rf"{kind}\.safetensors.*{message}"):
        load_pipeline(path)


def test_hypernetwork_and_embedding_files_are_refused(tmp_path):
    hypernetwork = tmp_path / "style.pt"
    torch.save(
        {768: [{"linear.0.weight": torch.zeros(2, 2)}], "layer_structure": [1, 2, 1], "name": "style"}, hypernetwork
    )
    with pytest.raises(HypernetFileError, match=r"style\.pt.*hypernetwork"):
        load_pipeline(hypernetwork)
    as_safetensors = tmp_path / "style.safetensors"
    save_file({"768.k.linear.0.weight": torch.zeros(2, 2)}, str(as_safetensors), metadata={"format": "hypernet"})
    with pytest.raises(HypernetFileError, match=r"style\.safetensors.*hypernetwork"):
        load_pipeline(as_safetensors)
    embedding = tmp_path / "embedding.pt"
    torch.save({"string_to_param": {"*": torch.zeros(1, 768)}, "name": "x"}, embedding)
    with pytest.raises(HypernetFileError, match=r"embedding\.pt.*textual-inversion"):
        load_pipeline(embedding)


def test_missing_empty_and_foreign_files(tmp_path):
    with pytest.raises(HypernetFileError, match=r"nothing\.safetensors: no such file"):
        load_pipeline(tmp_path / "nothing.safetensors")
    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(HypernetFileError, match=r"empty\.ckpt: is empty"):
        load_pipeline(tmp_path / "empty.ckpt")
    (tmp_path / "notes.txt").write_text("hello world, not a model")
    with pytest.raises(HypernetFileError, match=r"notes\.txt: is neither a \.safetensors file"):
        load_pipeline(tmp_path / "notes.txt")
    (tmp_path / "folder").mkdir()
    with pytest.raises(HypernetFileError, match=r"folder: is a folder without model_index\.json"):
        load_pipeline(tmp_path / "folder")


def test_family_mismatch_is_named(sd1_file):
    with pytest.raises(HypernetFileError, match=r"SD 1\.x .*cross-attention width 32, not family 'sd2'"):
        load_pipeline(sd1_file, family="sd2")
    with pytest.raises(HypernetFileError, match="is not an SDXL .safetensors checkpoint.*not family 'sdxl'"):
        load_pipeline(sd1_file, family="sdxl")
    with pytest.raises(HypernetError, match="unknown model family"):
        load_pipeline(sd1_file, family="sd3")
    with pytest.raises(HypernetError, match="prediction_type"):
        load_pipeline(sd1_file, prediction_type="x0")


# --- v-prediction -------------------------------------------------------------------------------


def test_prediction_type_sources(sd2_pipe, tmp_path):
    exported = export_single_file(sd2_pipe, tmp_path / "v.safetensors", dtype=torch.float32)
    assert load_pipeline(exported).scheduler.config.prediction_type == "v_prediction"  # from the metadata
    assert load_pipeline(exported, prediction_type="epsilon").scheduler.config.prediction_type == "epsilon"

    bare = _strip_metadata(exported, tmp_path / "bare.safetensors")
    side_car = tmp_path / "bare.yaml"
    side_car.write_text(
        'model:\n  target: ldm.models.diffusion.ddpm.LatentDiffusion\n  params:\n    parameterization: "v"\n'
    )
    assert describe_checkpoint(bare).prediction_type == "v_prediction"
    assert load_pipeline(bare).scheduler.config.prediction_type == "v_prediction"
    side_car.write_text("model:\n  params:\n    linear_start: 0.00085\n")
    assert describe_checkpoint(bare).prediction_type == "epsilon"
    side_car.unlink()

    marked = tmp_path / "marked.safetensors"
    save_file({**load_file(str(bare)), "v_pred": torch.tensor([])}, str(marked))
    assert describe_checkpoint(marked).prediction_type == "v_prediction"

    # No word anywhere: an SD 2.x layout file is judged by a test forward pass.
    assert describe_checkpoint(bare).prediction_type is None
    assert load_pipeline(bare).scheduler.config.prediction_type in ("epsilon", "v_prediction")


class _FakeUNet(torch.nn.Module):
    def __init__(self, offset):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.offset = offset
        self.config = types.SimpleNamespace(in_channels=4, cross_attention_dim=8)

    def forward(self, sample, timestep, encoder_hidden_states):
        assert int(timestep[0]) == 999 and encoder_hidden_states.shape == (1, 77, 8)
        return types.SimpleNamespace(sample=sample + self.offset)


def test_guess_prediction_type_rule():
    assert guess_prediction_type(_FakeUNet(0.05)) == "epsilon"
    assert guess_prediction_type(_FakeUNet(-1.6)) == "v_prediction"


# --- diffusers folders and random pipelines ----------------------------------------------------------


def test_diffusers_folder_loads_with_clean_tokenizer(sd2_pipe, tmp_path):
    folder = tmp_path / "pipe"
    sd2_pipe.save_pretrained(folder)
    loaded = load_pipeline(folder)
    _assert_same_weights(sd2_pipe, loaded)
    assert type(loaded.tokenizer).__name__ == "ClipTokenizer"
    assert loaded.tokenizer("wow!! &amp;", padding="max_length", max_length=8).input_ids == [
        49406, 2781, 748, 261, 49407, 0, 0, 0]  # fmt: skip
    assert load_pipeline(folder, prediction_type="epsilon").scheduler.config.prediction_type == "epsilon"


def test_broken_diffusers_folder(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(HypernetFileError, match=str(tmp_path.name)):
        load_pipeline(tmp_path)


def test_pipeline_from_config_is_seeded(tmp_path):
    write_config_folder(tiny_config("sd1"), tmp_path)
    state = torch.random.get_rng_state()
    first, again, other = (pipeline_from_config(tmp_path, seed=seed) for seed in (5, 5, 6))
    assert torch.equal(state, torch.random.get_rng_state())
    _assert_same_weights(first, again)
    assert not torch.equal(first.unet.conv_in.weight, other.unet.conv_in.weight)
    with pytest.raises(HypernetFileError, match="not a folder"):
        pipeline_from_config(tmp_path / "nope")
