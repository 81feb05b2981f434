import json

import pytest
import torch
from safetensors import safe_open

from hypernet.toy import evaluate, model, world


pytestmark = pytest.mark.needs_toy_model

def test_shipped_folder_loads_with_plain_diffusers_offline():
    from diffusers import StableDiffusionPipeline

    pipeline = StableDiffusionPipeline.from_pretrained(str(model.shipped_model_folder()), local_files_only=True)
    assert pipeline.tokenizer.model_max_length == 77
    assert pipeline.text_encoder.config.vocab_size == 49408 == len(pipeline.tokenizer)
    assert pipeline.tokenizer("a red circle").input_ids == [49406, 320, 736, 7117, 49407]
    ours = model.load_toy_pipeline(dtype=torch.float16)  # built from configs, weights loaded strictly
    for name in ("unet", "vae", "text_encoder"):
        theirs, mine = getattr(pipeline, name).state_dict(), getattr(ours, name).state_dict()
        assert list(mine) == list(theirs), name
        assert all(torch.equal(mine[key], theirs[key].to(mine[key].dtype)) for key in theirs), name
    assert ours.scheduler.config == pipeline.scheduler.config


def test_weights_are_fp16_and_small():
    sizes = model.weight_bytes()
    assert set(sizes) == {"unet", "vae", "text_encoder", "judge"}
    assert sum(size for name, size in sizes.items() if name != "judge") <= 20 * 1024 * 1024
    for path in model.shipped_model_folder().rglob("*.safetensors"):
        with safe_open(str(path), framework="pt") as handle:
            assert {handle.get_slice(key).get_dtype() for key in handle.keys()} == {"F16"}, path


def test_architecture_is_stable_diffusion_scaled_down(toy_pipeline):
    from diffusers.models.attention_processor import Attention

    unet = toy_pipeline.unet
    assert unet.config.down_block_types == ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"]
    assert unet.config.up_block_types == ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
    self_sizes, cross_sizes = set(), set()
    for name, module in unet.named_modules():
        if isinstance(module, Attention):
            (self_sizes if name.endswith("attn1") else cross_sizes).add(module.to_k.in_features)
    assert self_sizes == set(model.SELF_ATTENTION_SIZES) and cross_sizes == {model.TEXT_WIDTH}
    assert not self_sizes & cross_sizes  # hypernetworks for both kinds are told apart by size
    assert toy_pipeline.vae_scale_factor == 4
    assert 0.2 < toy_pipeline.vae.config.scaling_factor < 5


@pytest.mark.parametrize("scheduler", ["ddim", "euler", "euler_a", "dpmsolver"])
def test_stock_schedulers_generate(toy_pipeline, toy_judge, scheduler):
    from hypernet.toy.judge import judge_images

    asked = [("square", "yellow", "black"), ("circle", "red", "white"), ("cross", "green", "gray"), ("triangle", "purple", "white")]
    toy_pipeline.scheduler = model.make_scheduler(scheduler)
    try:
        pictures = evaluate.generate(toy_pipeline, [world.plain_prompt(*a) for a in asked], [1, 2, 3, 4], steps=20)
    finally:
        toy_pipeline.scheduler = model.make_scheduler("ddim")
    assert pictures.shape == (4, 3, 64, 64) and torch.isfinite(pictures).all()
    predictions = judge_images(toy_judge, pictures)
    assert sum(p.colour == colour for p, (_, colour, _) in zip(predictions, asked)) >= 3, predictions


def test_training_summary_is_shipped():
    summary = json.loads((model.shipped_model_folder() / "training.json").read_text())
    assert summary["plan"]["name"] == "full"
    assert summary["wall_minutes"] <= 60
