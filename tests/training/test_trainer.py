"""Training end to end on the tiny pipeline: learning, frozen base, outputs, exact resume,
Ctrl-C, non-finite losses. One reference run of 100 steps is shared by several tests."""

import copy
import csv
import json
import signal
from pathlib import Path

import pytest
import torch

import hypernet
from hypernet import attention
from hypernet.training import TrainingConfig, train
from hypernet.training import dataset as data
from hypernet.training import loss as loss_module
from hypernet.training.checkpoints import read_resume_point
from hypernet.training.config import PreviewOptions

from .conftest import base_checksum, make_dataset, new_network

STEPS = 100


def reference_config(folder: Path, run_dir: Path, **changes) -> TrainingConfig:
    options = dict(
        data=folder, learning_rate="5e-3:60, 2e-3", max_steps=STEPS, batch_size=1, width=32, height=32,
        shuffle_tags=True, tag_dropout=0.2, flip=True, latent_sampling="random", clip_grad="norm", clip_value="1.0",
        save_every=50, preview_every=50, preview=PreviewOptions(steps=2, sampler="DDIM"), run_dir=run_dir, seed=11,
    )
    options.update(changes)
    return TrainingConfig(**options)


def evaluation_loss(pipe, network, folder) -> float:
    """The loss at fixed timesteps and noise over the whole dataset (no sampling noise)."""
    schedule = loss_module.noise_schedule(pipe.scheduler.config)
    encoded = data.encode(data.scan(folder), pipe.vae, mode="stretch", target=(32, 32), multiple=2,
                          sampling="deterministic", flip=False, use_alpha_weight=False, seed=0)
    latents = torch.cat([example.latents for example in encoded.examples])
    texts = [f"a painting of {example.source.caption} in the style of tiny" for example in encoded.examples]
    embeddings, _ = pipe.encode_prompt(texts, "cpu", 1, False)
    generator = torch.Generator().manual_seed(0)
    total = 0.0
    with torch.no_grad(), attention.activate(pipe.unet, [(network, 1.0)]):
        for timestep in (100, 300, 500, 700, 900):
            noise = torch.randn(latents.shape, generator=generator)
            total += loss_module.diffusion_loss(pipe.unet, schedule, latents, noise, torch.full((len(latents),), timestep),
                                                embeddings).item()
    return total / 5


def switches(pipe):
    """Every module's train/eval mode and every parameter's requires_grad."""
    components = (pipe.unet, pipe.vae, pipe.text_encoder)
    return ([m.training for c in components for m in c.modules()],
            [p.requires_grad for c in components for p in c.parameters()])


def set_switches(pipe, state):
    components = (pipe.unet, pipe.vae, pipe.text_encoder)
    for module, mode in zip([m for c in components for m in c.modules()], state[0]):
        module.training = mode
    for parameter, flag in zip([p for c in components for p in c.parameters()], state[1]):
        parameter.requires_grad_(flag)


@pytest.fixture(scope="module")
def reference(pipe, tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    folder = make_dataset(root / "data")
    network = new_network()
    source = root / "library" / "tiny.pt"
    hypernet.save(network, source)
    network = hypernet.load(source)
    untouched = copy.deepcopy(network)
    before = base_checksum(pipe)
    loss_before = evaluation_loss(pipe, network, folder)
    attention.uninstall(pipe.unet)  # the caller's own processors, never wrapped
    processors = dict(pipe.unet.attn_processors)
    usual = switches(pipe)
    pipe.vae.train()  # an unusual state must come back too: VAE in train mode, text encoder frozen
    pipe.text_encoder.requires_grad_(False)
    given = switches(pipe)
    result = train(pipe, network, reference_config(folder, root / "run"), progress=False)
    returned = switches(pipe)
    set_switches(pipe, usual)
    processors_after = dict(pipe.unet.attn_processors)
    return {
        "processors": (processors, processors_after), "switches": (given, returned),
        "root": root, "data": folder, "source": source, "network": network, "untouched": untouched, "result": result,
        "checksums": (before, base_checksum(pipe)), "loss": (loss_before, evaluation_loss(pipe, network, folder)),
    }


def test_loss_decreases_over_100_steps(reference):
    before, after = reference["loss"]
    assert after < 0.85 * before, (before, after)
    losses = [value for _, value in reference["result"].losses]
    assert len(losses) == STEPS
    assert sum(losses[-25:]) < sum(losses[:25])


def test_only_the_hypernetwork_changes(reference, pipe):
    assert reference["checksums"][0] == reference["checksums"][1]
    given, returned = reference["switches"]
    assert returned == given
    modes, flags = given
    assert any(modes) and not all(modes) and any(flags) and not all(flags)  # a mixed state, all of it restored
    trained, untouched = reference["network"].state_dict(), reference["untouched"].state_dict()
    assert all(not torch.equal(trained[key], untouched[key]) for key in trained if key.endswith("weight"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="devices can only move off a CUDA device")
def test_devices_come_back_after_training_on_cuda(tmp_path):
    from tiny_models import tiny_pipeline

    pipe = tiny_pipeline().to("cuda")
    config = TrainingConfig(data=make_dataset(tmp_path / "data"), learning_rate="1e-3", max_steps=2, width=16, height=16,
                            save_every=0, preview_every=0, run_dir=tmp_path / "run", seed=1)
    train(pipe, new_network(), config, progress=False, log=lambda m: None)  # moves VAE and text encoder to the CPU
    assert {next(c.parameters()).device.type for c in (pipe.unet, pipe.vae, pipe.text_encoder)} == {"cuda"}


def test_the_pipeline_gets_its_own_processors_back(reference):
    before, after = reference["processors"]
    assert not any(isinstance(p, attention.HypernetworkProcessor) for p in before.values())
    assert after.keys() == before.keys()
    assert all(after[name] is processor for name, processor in before.items())


def test_outputs_of_a_run(reference):
    from core.webui_rules import webui_would_refuse

    result, run = reference["result"], reference["root"] / "run"
    assert result.stop_reason == "finished" and result.steps_done == STEPS and result.output == reference["source"]
    saved = hypernet.load(reference["source"])
    assert saved.step == STEPS and saved.name == "tiny"
    assert webui_would_refuse(reference["source"]) == []
    for key, value in saved.state_dict().items():
        assert torch.equal(value, reference["network"].state_dict()[key].cpu())
    middle = run / "hypernetworks" / "tiny-50.pt"
    assert [p.name for p in result.checkpoints] == ["tiny-50.pt", "tiny-100.pt"]
    assert hypernet.load(middle).step == 50 and webui_would_refuse(middle) == []
    point = read_resume_point(middle)
    assert point.exact and point.state["step"] == 50  # the .optim hash matches *this* file
    assert point.optimizer.optimizer_name == "AdamW"
    assert all("fused" not in group for group in point.optimizer.state_dict["param_groups"])
    plain = torch.optim.AdamW(point.network.parameters())  # as the webui would load it
    plain.load_state_dict(point.optimizer.state_dict)
    assert len(plain.state) == len(list(point.network.parameters()))
    assert (run / "images" / "tiny-50.png").is_file() and (run / "images" / "tiny-100.png").is_file()
    from hypernet.infotext import read_png_infotext

    assert "Steps: 2" in read_png_infotext(run / "images" / "tiny-50.png")
    with open(run / "hypernetwork_loss.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert list(rows[0]) == ["step", "epoch", "epoch_step", "loss", "learn_rate"] and len(rows) == STEPS
    assert rows[4] == {"step": "5", "epoch": "1", "epoch_step": "1", "loss": rows[4]["loss"], "learn_rate": "0.005"}
    assert rows[-1]["learn_rate"] == "0.002"
    settings = json.loads((run / "settings.json").read_text())
    assert settings["seed"] == 11 and settings["config"]["learning_rate"] == "5e-3:60, 2e-3"
    from PIL import Image

    with Image.open(run / "loss.png") as plot:
        assert plot.size == (800, 450)


def test_resume_after_stopping_at_50_ends_with_the_same_weights(reference, pipe, tmp_path):
    source = tmp_path / "tiny.pt"
    hypernet.save(reference["untouched"], source)  # never trained: step 0
    steps, handlers = [0], set()

    def count(info):
        steps[0] = info.step

    def stop_at_50():  # what the CLI's Ctrl-C handler does: set the flag `stop` reads
        handlers.add(signal.getsignal(signal.SIGINT))
        return steps[0] >= 50

    network = hypernet.load(source)
    config = reference_config(reference["data"], tmp_path / "run", preview_every=0)
    first = train(pipe, network, config, progress=False, on_step=count, stop=stop_at_50)
    assert first.stop_reason == "interrupted" and first.steps_done == 50
    assert handlers == {signal.getsignal(signal.SIGINT)}  # the library installs no signal handler
    assert hypernet.load(source).step == 50  # saved on the way out
    checkpoint = tmp_path / "run" / "hypernetworks" / "tiny-50.pt"
    assert read_resume_point(checkpoint).exact

    fresh = hypernet.load(source)
    second = train(pipe, fresh, config.replace(seed=None), resume=checkpoint, progress=False)
    assert second.stop_reason == "finished" and second.start_step == 50 and second.steps_done == STEPS
    assert second.resumed_exactly and second.seed == 11
    expected = reference["network"].state_dict()
    for key, value in fresh.state_dict().items():
        assert torch.allclose(value, expected[key], atol=1e-6, rtol=0), key
    with open(tmp_path / "run" / "hypernetwork_loss.csv", newline="") as stream:
        steps = [int(row["step"]) for row in csv.DictReader(stream)]
    assert steps == list(range(1, STEPS + 1))  # one history, no duplicates


def test_non_finite_loss_is_skipped_reported_and_stops_when_it_persists(pipe, tmp_path, monkeypatch):
    folder = make_dataset(tmp_path / "data")
    real = loss_module.diffusion_loss
    calls = {"count": 0}

    def poisoned(*args, **kwargs):
        calls["count"] += 1
        value = real(*args, **kwargs)
        return value * float("nan") if calls["count"] == 3 or calls["count"] >= 6 else value

    monkeypatch.setattr(loss_module, "diffusion_loss", poisoned)
    network = new_network()
    messages = []
    config = TrainingConfig(data=folder, learning_rate="1e-3", max_steps=20, width=16, height=16, save_every=0,
                            preview_every=0, run_dir=tmp_path / "run", seed=1, nonfinite_patience=3,
                            auto_recover=False)  # with it, see test_divergence.py
    result = train(pipe, network, config, output=tmp_path / "out.pt", progress=False, log=messages.append)
    assert result.stop_reason == "non-finite loss"
    assert result.steps_done == 4 and result.skipped_steps == 4  # steps 1, 2, [nan], 3, 4, [nan x 3]
    assert any("step 3: non-finite loss" in m and "lower the learning rate (now 0.001)" in m for m in messages)
    assert any("3 steps in a row" in m and "weights of step 4" in m for m in messages)
    saved = hypernet.load(tmp_path / "out.pt")
    assert saved.step == 4 and all(torch.isfinite(v).all() for v in saved.state_dict().values())
    for key, value in saved.state_dict().items():
        assert torch.equal(value, network.state_dict()[key].cpu())


def test_a_finished_schedule_returns_at_once(pipe, tmp_path):
    folder = make_dataset(tmp_path / "data")
    network = new_network()
    network.metadata.step = 30
    config = TrainingConfig(data=folder, learning_rate="1e-3:30", run_dir=tmp_path / "run")
    result = train(pipe, network, config, progress=False, log=lambda m: None)
    assert result.stop_reason == "already finished" and "ends at step 30" in result.messages[-1]
    assert not (tmp_path / "run").exists()


def test_an_unexpected_error_saves_the_last_complete_step_and_is_raised(pipe, tmp_path, monkeypatch):
    folder = make_dataset(tmp_path / "data")
    real = loss_module.diffusion_loss
    calls = {"count": 0}

    def failing(*args, **kwargs):
        calls["count"] += 1
        if calls["count"] == 4:
            raise RuntimeError("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(loss_module, "diffusion_loss", failing)
    config = TrainingConfig(data=folder, learning_rate="1e-3", max_steps=10, width=16, height=16, save_every=0,
                            preview_every=0, run_dir=tmp_path / "run", seed=1)
    messages = []
    with pytest.raises(RuntimeError, match="disk on fire"):
        train(pipe, new_network(), config, output=tmp_path / "out.pt", progress=False, log=messages.append)
    rescue = tmp_path / "run" / "hypernetworks" / "tiny-3.pt"
    assert read_resume_point(rescue).exact and hypernet.load(rescue).step == 3
    assert not (tmp_path / "out.pt").exists()
    assert any("training failed at step 4" in m and "--resume" in m for m in messages)


def test_caption_dropout_trains_that_share_on_the_unconditional_prompt(pipe, tmp_path):
    """Classifier-free guidance also runs the network on the empty prompt; caption dropout
    trains on it. What each step trained on is what `on_step` is told."""
    seen = []
    folder = make_dataset(tmp_path / "data")
    config = TrainingConfig(data=folder, learning_rate="1e-3", max_steps=60, batch_size=2, width=16, height=16,
                            save_every=0, preview_every=0, run_dir=tmp_path / "run", seed=5, caption_dropout=0.4)
    train(pipe, new_network(), config, progress=False, log=lambda m: None, on_step=lambda info: seen.extend(info.prompts))
    empty = seen.count("")
    assert len(seen) == 120 and 0.25 < empty / len(seen) < 0.55, empty
    assert all("a " in text for text in seen if text)  # the rest are captioned template lines
    assert json.loads((tmp_path / "run" / "settings.json").read_text())["config"]["caption_dropout"] == 0.4
    with pytest.raises(hypernet.HypernetConfigError, match="caption_dropout must be in"):
        config.replace(caption_dropout=1.0).validate()
