import pytest
import torch

from hypernet.errors import HypernetConfigError, HypernetFileError
from hypernet.toy import judge, world


def test_shipped_judge_is_small_and_accurate(toy_judge):
    from hypernet.toy.model import shipped_model_folder

    assert (shipped_model_folder() / judge.JUDGE_WEIGHTS).stat().st_size <= 2 * 1024 * 1024
    accuracy = judge.evaluate_judge(toy_judge, count=256, seed=77)
    assert min(accuracy.values()) >= 0.95, accuracy
    degraded = judge.evaluate_judge(toy_judge, count=256, seed=78, degrade=True)
    assert min(degraded.values()) >= 0.85, degraded


def test_predictions_name_the_scene(toy_judge):
    samples = world.sample(9, 12)
    predictions = judge.judge_images(toy_judge, [image for image, _, _ in samples])
    hits = sum(p.shape == s.shape and p.colour == s.colour and p.background == s.background for p, (_, _, s) in zip(predictions, samples))
    assert hits >= 11
    assert all(0 < p.confidence["shape"] <= 1 for p in predictions)


@pytest.mark.parametrize("style", world.STYLES)
def test_judge_sees_shape_and_colour_through_a_style(toy_judge, style):
    samples = world.sample(31, 64, style)
    predictions = judge.judge_images(toy_judge, [image for image, _, _ in samples])
    hits = sum(p.shape == s.shape and p.colour == s.colour for p, (_, _, s) in zip(predictions, samples))
    assert hits / len(samples) >= 0.9


@pytest.mark.parametrize("style", world.STYLES)
def test_style_scores_separate_base_pictures_from_style_pictures(style):
    scenes = list(world.scenes(21, 60))
    base = judge.style_score([world.draw(s, "plain") for s in scenes], style)
    styled = judge.style_score([world.draw(s, style) for s in scenes], style)
    other = [name for name in world.STYLES if name != style][0]
    assert styled.mean() > 10 * base.mean()
    assert (styled > base).float().mean() >= 0.95  # scene by scene, too
    assert judge.style_progress(base.mean().item(), styled.mean().item(), styled.mean().item()) == pytest.approx(1.0)
    assert judge.style_score([world.draw(s, other) for s in scenes], style).mean() < styled.mean()


def test_style_scores_accept_tensors_and_reject_unknown_styles():
    images = [image for image, _, _ in world.sample(1, 3)]
    as_tensor = torch.from_numpy(world.image_array(images))
    assert torch.allclose(judge.water_score(images), judge.water_score(as_tensor))
    with pytest.raises(HypernetConfigError, match="valid styles"):
        judge.style_score(images, "sepia")


def test_judge_round_trips_and_refuses_missing_files(tmp_path):
    trained, accuracy = judge.train_judge(steps=2, batch_size=4, progress=False, log=lambda _: None)
    path = judge.save_judge(trained, tmp_path, accuracy)
    loaded = judge.load_judge(tmp_path)
    pixels = torch.from_numpy(world.image_array([world.sample(0, 1)[0][0]]))
    for name, logits in loaded(pixels).items():
        assert torch.allclose(logits, trained.half().float()(pixels)[name], atol=1e-3)
    with pytest.raises(HypernetFileError, match="train-judge"):
        judge.load_judge(tmp_path / "nothing")
    assert path.name == "judge.safetensors"
