"""Export writes the original layout atomically and records what the loader needs."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from hypernet.errors import HypernetConfigError, HypernetFileError
from hypernet.models import export_single_file

from .tiny import build_pipeline, tiny_config


@pytest.fixture(scope="module")
def assembled():
    """Not the tiny `pipe`: built by the checkpoint loader from an SD 1.x family config, so
    every module the single-file layout names exists."""
    return build_pipeline(tiny_config("sd1"), seed=2)


def test_layout_dtype_and_metadata(assembled, tmp_path):
    path = export_single_file(assembled, tmp_path / "out.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        keys = set(handle.keys())
        q = handle.get_tensor("first_stage_model.encoder.mid.attn_1.q.weight")
        positions = handle.get_tensor("cond_stage_model.transformer.text_model.embeddings.position_ids")
    assert q.shape == (64, 64, 1, 1) and q.dtype == torch.float16
    assert torch.equal(q[:, :, 0, 0], assembled.vae.encoder.mid_block.attentions[0].to_q.weight.half())
    assert positions.dtype == torch.int64 and positions.tolist() == [list(range(77))]
    assert {k.split(".", 1)[0] for k in keys} == {"model", "first_stage_model", "cond_stage_model"}
    assert metadata["format"] == "pt" and metadata["hypernet.prediction_type"] == "epsilon"
    assert json.loads(metadata["hypernet.unet_config"])["block_out_channels"] == [32, 64]
    assert metadata["hypernet.pad_with"] == "eos"


def test_explicit_sd2_layout_for_an_sd1_pipeline(assembled, tmp_path):
    path = export_single_file(assembled, tmp_path / "open_clip.safetensors", layout="sd2", dtype=torch.float32)
    with safe_open(str(path), framework="pt") as handle:
        fused = handle.get_tensor("cond_stage_model.model.transformer.resblocks.1.attn.in_proj_weight")
        identity = handle.get_tensor("cond_stage_model.model.transformer.resblocks.2.attn.out_proj.weight")
    attention = assembled.text_encoder.encoder.layers[1].self_attn
    assert torch.equal(fused, torch.cat([attention.q_proj.weight, attention.k_proj.weight, attention.v_proj.weight]))
    assert not identity.any()


def test_failed_write_leaves_old_file_and_no_temporary(assembled, tmp_path, monkeypatch):
    import safetensors.torch

    target = tmp_path / "model.safetensors"
    target.write_bytes(b"the previous model")

    def full_disk(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    with pytest.raises(HypernetFileError, match=r"model\.safetensors: cannot be written \(No space left"):
        export_single_file(assembled, target)
    assert target.read_bytes() == b"the previous model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_bad_arguments(assembled, tmp_path):
    with pytest.raises(HypernetFileError, match=r"model\.ckpt: export writes \.safetensors only"):
        export_single_file(assembled, tmp_path / "model.ckpt")
    with pytest.raises(HypernetConfigError, match="export dtype"):
        export_single_file(assembled, tmp_path / "m.safetensors", dtype=torch.int8)
    with pytest.raises(HypernetConfigError, match="layout 'sdxl'"):
        export_single_file(assembled, tmp_path / "m.safetensors", layout="sdxl")
    assert not list(tmp_path.iterdir())
