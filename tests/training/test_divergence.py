"""Divergence: the watch on synthetic loss sequences, and runs that diverge for real (a
far too high learning rate on the tiny pipeline) going back to their last good weights."""

import csv
import json
import math
import random

import pytest
import torch

import hypernet
from hypernet.training import TrainingConfig, train
from hypernet.training import loss as loss_module
from hypernet.training.checkpoints import read_resume_point
from hypernet.training.divergence import DivergenceWatch
from hypernet.training.recovery import MAX_RECOVERIES, RECOVERIES_NAME

from .conftest import make_dataset, new_network


def diffusion_like(rng: random.Random, count: int, level: float = 0.03, spread: float = 1.4):
    """Per-step losses as noisy as a batch-1 diffusion loss on the toy model (its log-loss
    has a standard deviation of 1.41: the timestep is drawn uniformly)."""
    return [level * math.exp(rng.gauss(0, spread)) for _ in range(count)]


def first_diverging(watch: DivergenceWatch, losses, sizes=None):
    for index, loss in enumerate(losses):
        verdict = watch.update(loss, None if sizes is None else sizes[index])
        if verdict.diverging:
            return index, verdict
    return None, None


@pytest.mark.parametrize("spread", [0.8, 1.4, 2.0])
def test_a_noisy_healthy_run_never_fires(spread):
    for seed in range(2):
        watch = DivergenceWatch()
        watch.start(0.07)
        sizes = [0.07 * (1 + 1e-4 * i) for i in range(10000)]  # the weights' RMS growing slowly, healthily
        index, verdict = first_diverging(watch, diffusion_like(random.Random(seed), 10000, spread=spread), sizes)
        assert index is None, (seed, index, verdict)


def test_a_loss_that_blows_up_fires_within_a_few_dozen_steps():
    rng = random.Random(1)
    losses = diffusion_like(rng, 300) + [30 * v for v in diffusion_like(rng, 200)]
    index, verdict = first_diverging(DivergenceWatch(), losses)
    assert 300 <= index < 300 + 40 and "best reached" in verdict.reason


def test_a_steady_drift_fires_before_the_loss_is_ten_times_the_best():
    rng = random.Random(2)
    losses = diffusion_like(rng, 300, spread=0.9) + [v * 1.01 ** i for i, v in enumerate(diffusion_like(rng, 1000, spread=0.9))]
    index, verdict = first_diverging(DivergenceWatch(), losses)
    assert index is not None and 1.01 ** (index - 300) < 10, index


def test_non_finite_losses_and_weights_fire_at_once():
    watch = DivergenceWatch()
    assert watch.update(float("nan")).diverging and "nan" in watch.update(float("nan")).reason
    assert watch.update(float("inf")).diverging
    verdict = watch.update(0.1, float("inf"))
    assert verdict.diverging and "finite" in verdict.reason


def test_a_jump_of_the_weights_fires_even_on_the_first_step():
    watch = DivergenceWatch()
    watch.start(0.071)
    verdict = watch.update(0.02, 0.22)  # a learning rate of 0.3 on the toy model
    assert verdict.diverging and "root mean square grew from 0.071 to 0.22 within 1 steps" in verdict.reason
    watch.reset(0.071)
    assert not watch.update(0.02, 0.075).diverging


def test_small_weights_may_grow_up_to_the_floor():
    """The webui's Normal init (RMS 0.01) grows fast at first, healthily."""
    watch = DivergenceWatch()
    watch.start(0.01)
    assert not any(watch.update(0.03, 0.01 + 0.001 * i).diverging for i in range(60))  # up to 0.07
    assert watch.update(0.03, 0.15).diverging


def test_the_state_round_trips_and_reset_keeps_the_best():
    rng = random.Random(3)
    watch = DivergenceWatch()
    watch.start(0.07)
    for loss in diffusion_like(rng, 200):
        watch.update(loss, 0.07)
    copy = DivergenceWatch()
    copy.load_state_dict(json.loads(json.dumps(watch.state_dict())))
    for loss in diffusion_like(rng, 100) + [40 * v for v in diffusion_like(rng, 40)]:
        assert watch.update(loss, 0.07) == copy.update(loss, 0.07)
    best = watch.best
    watch.reset(0.07)
    assert watch.best == best and watch.streak == 0 and not watch.logs


# -- real runs ------------------------------------------------------------------------------------

def diverging_config(folder, run_dir, **changes):
    options = dict(data=folder, learning_rate="0.1", max_steps=16, batch_size=2, width=16, height=16, save_every=4,
                   preview_every=0, run_dir=run_dir, seed=1)
    options.update(changes)
    return TrainingConfig(**options)


@pytest.fixture(scope="module")
def recovered(pipe, tmp_path_factory):
    root = tmp_path_factory.mktemp("recovered")
    folder = make_dataset(root / "data")
    messages = []
    network = new_network(weight_init="ZeroLast")
    result = train(pipe, network, diverging_config(folder, root / "run"), output=root / "out.pt", progress=False,
                   log=messages.append)
    return {"root": root, "folder": folder, "result": result, "messages": messages, "network": network}


def test_a_diverging_run_goes_back_and_finishes_with_a_lower_learning_rate(recovered):
    result, root = recovered["result"], recovered["root"]
    assert result.stop_reason == "finished" and result.steps_done == 16
    assert 1 <= len(result.recoveries) < MAX_RECOVERIES
    first = result.recoveries[0]
    assert first.back_to_step < first.step and first.learning_rate_factor == 0.5
    assert first.learning_rate == pytest.approx(0.05) and "root mean square" in first.reason
    assert all(torch.isfinite(v).all() for v in hypernet.load(root / "out.pt").state_dict().values())
    with open(root / "run" / RECOVERIES_NAME, newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [int(row["step"]) for row in rows] == [r.step for r in result.recoveries]
    assert rows[0]["back_to_step"] == str(first.back_to_step) and float(rows[-1]["learning_rate_factor"]) < 1
    said = [m for m in recovered["messages"] if "went back to step" in m]
    assert len(said) == len(result.recoveries) and f"step {first.step}:" in said[0] and "0.5x the schedule" in said[0]


def test_a_recovered_run_keeps_one_history_and_saves_its_factor(recovered):
    result, root = recovered["result"], recovered["root"]
    steps = [step for step, _ in result.losses]
    assert steps == list(range(1, 17))  # the abandoned steps are gone
    with open(root / "run" / "hypernetwork_loss.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [int(row["step"]) for row in rows] == steps
    assert float(rows[-1]["learn_rate"]) == pytest.approx(0.1 * result.recoveries[-1].learning_rate_factor)
    final = read_resume_point(root / "out.pt")
    assert final.exact and final.state["learning_rate_factor"] == result.recoveries[-1].learning_rate_factor
    assert final.state["recoveries"] == len(result.recoveries)
    written = sorted((root / "run" / "hypernetworks").glob("*.pt"))
    assert written == sorted(result.checkpoints)  # the checkpoints of abandoned steps are gone, side-cars too
    assert sorted(p.name for p in written[0].parent.iterdir()) == sorted(
        name for p in written for name in (p.name, p.name + ".optim", p.name + ".train.json"))
    factors = [read_resume_point(path).state["learning_rate_factor"] for path in written]
    assert all(read_resume_point(path).exact for path in written)
    assert all(f == result.recoveries[-1].learning_rate_factor for f in factors)


def test_a_recovered_run_resumes_exactly(recovered, pipe, tmp_path):
    """Stopped at step 8 (after its recovery) and resumed: the same weights as straight through."""
    result = recovered["result"]
    middle = [path for path in result.checkpoints if hypernet.load(path).step == 8]
    assert middle and read_resume_point(middle[0]).state["learning_rate_factor"] < 1  # written after a recovery
    network = new_network(weight_init="ZeroLast")
    resumed = train(pipe, network, diverging_config(recovered["folder"], tmp_path / "run"), resume=middle[0],
                    progress=False, log=lambda m: None)
    assert resumed.stop_reason == "finished" and resumed.steps_done == 16
    expected = recovered["network"].state_dict()
    for key, value in network.state_dict().items():
        assert torch.allclose(value, expected[key], atol=1e-6, rtol=0), key


def test_without_auto_recover_the_divergence_is_only_said(pipe, tmp_path):
    folder = make_dataset(tmp_path / "data")
    messages = []
    result = train(pipe, new_network(weight_init="ZeroLast"), diverging_config(folder, tmp_path / "run", max_steps=8,
                                                                            auto_recover=False),
                   progress=False, log=messages.append)
    warnings = [m for m in messages if "diverging" in m]
    assert result.stop_reason == "finished" and result.steps_done == 8 and not result.recoveries
    assert len(warnings) == 1 and "lower the learning rate (now 0.1)" in warnings[0] and "--auto-recover" in warnings[0]
    assert not (tmp_path / "run" / RECOVERIES_NAME).exists()


def test_a_run_that_keeps_diverging_stops_with_its_last_good_weights(pipe, tmp_path):
    folder = make_dataset(tmp_path / "data")
    messages = []
    network = new_network(weight_init="ZeroLast")
    before = {key: value.clone() for key, value in network.state_dict().items()}
    result = train(pipe, network, diverging_config(folder, tmp_path / "run", learning_rate="100", save_every=0),
                   output=tmp_path / "out.pt", progress=False, log=messages.append)
    assert result.stop_reason == "diverged" and len(result.recoveries) == MAX_RECOVERIES
    assert result.steps_done == 0 and any("training stopped" in m and "after 4 recoveries" in m for m in messages)
    saved = hypernet.load(tmp_path / "out.pt")
    for key, value in saved.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_non_finite_losses_that_persist_go_back_and_stop_after_the_last_recovery(pipe, tmp_path, monkeypatch):
    folder = make_dataset(tmp_path / "data")
    real = loss_module.diffusion_loss
    calls = {"count": 0}

    def poisoned(*args, **kwargs):  # step 3 has a non-finite loss, then every step from the sixth call on
        calls["count"] += 1
        value = real(*args, **kwargs)
        return value * float("nan") if calls["count"] == 3 or calls["count"] >= 6 else value

    monkeypatch.setattr(loss_module, "diffusion_loss", poisoned)
    messages = []
    config = TrainingConfig(data=folder, learning_rate="1e-3", max_steps=20, width=16, height=16, save_every=0,
                            preview_every=0, run_dir=tmp_path / "run", seed=1, nonfinite_patience=2)
    result = train(pipe, new_network(), config, output=tmp_path / "out.pt", progress=False, log=messages.append)
    assert result.stop_reason == "non-finite loss" and len(result.recoveries) == MAX_RECOVERIES
    first = result.recoveries[0]
    assert (first.step, first.back_to_step) == (5, 0) and "2 steps in a row had a non-finite loss" in first.reason
    assert any("step 3: non-finite loss" in m for m in messages)  # one alone is skipped, as without recovery
    assert result.steps_done == 0 and hypernet.load(tmp_path / "out.pt").step == 0


def test_the_command_line_switch(tmp_path):
    common = ["train", "tiny", "--data", str(tmp_path), "--lr", "1e-3"]
    assert parse(common).auto_recover is True
    assert parse([*common, "--no-auto-recover"]).auto_recover is False
    assert parse([*common, "--auto-recover"]).auto_recover is True


def parse(argv):
    import argparse

    from hypernet.cli import train as train_command

    parser = argparse.ArgumentParser()
    train_command.register(parser.add_subparsers())
    return train_command.config_from_args(parser.parse_args(argv))
