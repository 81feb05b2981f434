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
    # the continued UNet learnt on latents at the first stage's scale: it is kept
    assert after.vae.config.scaling_factor == before.vae.config.scaling_factor
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


def test_building_and_training_leave_the_global_random_generator_alone():
    """Each stage seeds its own draws and gives torch's global generator back as it was."""
    from hypernet.toy import judge

    plan = train.training_plan("quick", vae_steps=1, unet_steps=1, images=4, unet_batch_size=2)
    state = torch.random.get_rng_state()
    components = model.build_components(plan.seed)
    train.train_vae(components["vae"], plan, progress=False, log=lambda _: None)
    latents, input_ids = train.encode_training_set(components["vae"], components["tokenizer"], plan, progress=False)
    train.train_unet(components, latents, input_ids, plan, progress=False, log=lambda _: None)
    judge.train_judge(steps=1, batch_size=2, progress=False, log=lambda _: None)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_unknown_plan_lists_the_valid_ones():
    import pytest

    from hypernet.errors import HypernetConfigError

    with pytest.raises(HypernetConfigError, match="full, quick"):
        train.training_plan("huge")


def test_a_styles_stage_adds_styled_pictures_under_their_name_to_the_same_scenes():
    components = model.build_components(0)
    plain_plan = train.training_plan("quick", images=48, unet_style_share=0.0)
    styled_plan = train.training_plan("quick", images=48, unet_style_share=0.5)
    encode = lambda plan: train.encode_training_set(components["vae"], components["tokenizer"], plan, progress=False)
    plain_latents, plain_ids = encode(plain_plan)
    styled_latents, styled_ids = encode(styled_plan)
    # (CLIP's decoder puts a space before commas)
    decode = lambda ids: [text.replace(" ,", ",") for text in components["tokenizer"].batch_decode(ids, skip_special_tokens=True)]
    plain_captions, styled_captions = decode(plain_ids), decode(styled_ids)
    named = {"water": 0, "neon": 0}
    for index, (plain, styled) in enumerate(zip(plain_captions, styled_captions)):
        if styled == plain:  # an unstyled picture: the very same scene and latent as without styles
            assert torch.equal(plain_latents[index], styled_latents[index])
            continue
        style = styled.rsplit(",", 1)[-1].strip().removesuffix(" style")
        assert styled == f"{plain}, {style} style" and style in named, styled
        assert not torch.equal(plain_latents[index], styled_latents[index])  # drawn in the style
        named[style] += 1
    assert named["water"] >= 8 and named["neon"] >= 8, named  # about half of 48, both styles

