"""`hypernet toy train-base --quick`: the whole training code path, in seconds."""

import json

import torch

from hypernet.cli import main
from hypernet.toy import model, train


def test_quick_train_base_writes_a_loadable_pipeline(tmp_path, capsys):
    out = tmp_path / "toy"
    assert main(["toy", "train-base", "--quick", "--out", str(out), "--no-progress"]) == 0
    assert (out / "model_index.json").is_file()
    summary = json.loads((out / "training.json").read_text())
    assert summary["plan"]["name"] == "quick" and summary["evaluations"]  # judged at the end
    pipeline = model.load_toy_pipeline(folder=out)
    assert pipeline.vae.config.scaling_factor == summary["scaling_factor"]
    image = pipeline("a red circle on a blue background", height=64, width=64, num_inference_steps=2).images[0]
    assert image.size == (64, 64)


def test_a_second_stage_continues_from_the_first_weights(tmp_path):
    first = tmp_path / "first"
    assert main(["toy", "train-base", "--quick", "--out", str(first), "--no-progress"]) == 0
    second = tmp_path / "second"
    assert main(["toy", "train-base", "--quick", "--out", str(second), "--no-progress", "--continue-from", str(first),
                 "--learning-rate", "1e-9"]) == 0
    summary = json.loads((second / "training.json").read_text())
    assert summary["continued_from"] == str(first) and summary["plan"]["unet_learning_rate"] == 1e-9
    before, after = model.load_toy_pipeline(folder=first), model.load_toy_pipeline(folder=second)
    assert all(torch.equal(a, b) for a, b in zip(before.vae.parameters(), after.vae.parameters()))
    # a vanishing learning rate keeps the continued weights next to the first stage's
    for a, b in zip(before.unet.parameters(), after.unet.parameters()):
        assert torch.allclose(a, b, atol=1e-3)


def test_training_is_reproducible_with_a_fixed_seed(tmp_path):
    plan = train.training_plan("quick", vae_steps=2, unet_steps=2, images=8)
    first = model.build_components(plan.seed)
    second = model.build_components(plan.seed)
    train.train_vae(first["vae"], plan, progress=False, log=lambda _: None)
    train.train_vae(second["vae"], plan, progress=False, log=lambda _: None)
    for a, b in zip(first["vae"].parameters(), second["vae"].parameters()):
        assert torch.equal(a, b)


def test_unknown_plan_lists_the_valid_ones():
    import pytest

    from hypernet.errors import HypernetConfigError

    with pytest.raises(HypernetConfigError, match="full, quick"):
        train.training_plan("huge")
