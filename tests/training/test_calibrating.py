"""After a finished run the trainer fits the multiplier's calibration curve on the training
captions and writes it into the output file (hypernet's default; HYPERNET_CALIBRATE=0,
`calibrate=False` or --webui-defaults turn it off). A curve fitted to older weights never
survives training."""

import pytest

import hypernet
from hypernet.training import TrainingConfig, train
from hypernet.training.calibrating import CalibrationOptions, caption_prompts

from .conftest import make_dataset, new_network


def config(tmp_path, folder, **changes):
    options = dict(data=folder, learning_rate="1e-3", max_steps=2, width=16, height=16, save_every=0,
                   preview_every=0, run_dir=tmp_path / "run", seed=3,
                   calibration=CalibrationOptions(prompts=2, seeds=1, steps=2, sampler="DDIM"))
    options.update(changes)
    return TrainingConfig(**options)


def test_a_finished_run_writes_its_calibration_curve(pipe, tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERNET_CALIBRATE", "1")
    folder = make_dataset(tmp_path / "data")
    messages = []
    result = train(pipe, new_network(), config(tmp_path, folder), output=tmp_path / "out.pt", progress=False,
                   log=messages.append)
    assert result.stop_reason == "finished" and result.calibration is not None
    curve = hypernet.load(tmp_path / "out.pt").metadata.multiplier_calibration
    assert curve is not None and tuple(map(tuple, curve)) == tuple(result.calibration.curve)
    assert tuple(curve[0]) == (0.0, 0.0) and tuple(curve[-1]) == (1.0, 1.0)
    assert any("calibrated the multiplier" in m and "out.pt" in m for m in messages)
    # the checkpoints of the run stay uncalibrated: only the final file is measured
    assert all(hypernet.load(p).metadata.multiplier_calibration is None for p in result.checkpoints)


def test_over_its_budget_calibration_is_skipped_and_said(pipe, tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERNET_CALIBRATE", "1")
    folder = make_dataset(tmp_path / "data")
    messages = []
    options = CalibrationOptions(prompts=2, seeds=1, steps=2, budget_seconds=1e-6)
    result = train(pipe, new_network(), config(tmp_path, folder, calibration=options), output=tmp_path / "out.pt",
                   progress=False, log=messages.append)
    assert result.stop_reason == "finished" and result.calibration is None
    assert hypernet.load(tmp_path / "out.pt").metadata.multiplier_calibration is None
    assert any("calibration skipped" in m and "hypernet calibrate" in m for m in messages)


@pytest.mark.parametrize("how", ["environment", "config"])
def test_switched_off_nothing_is_fitted_and_a_stale_curve_is_dropped(pipe, tmp_path, monkeypatch, how):
    monkeypatch.setenv("HYPERNET_CALIBRATE", "0" if how == "environment" else "1")
    folder = make_dataset(tmp_path / "data")
    network = new_network()
    network.metadata.multiplier_calibration = ((0.0, 0.0), (0.5, 0.8), (1.0, 1.0))
    messages = []
    changes = {"calibrate": False} if how == "config" else {}
    result = train(pipe, network, config(tmp_path, folder, **changes), output=tmp_path / "out.pt", progress=False,
                   log=messages.append)
    assert result.calibration is None
    assert hypernet.load(tmp_path / "out.pt").metadata.multiplier_calibration is None
    assert any("calibration is dropped" in m for m in messages)
    assert not any("calibrat" in m and "fitted again" in m for m in messages)


def test_caption_prompts_are_distinct_and_spread():
    captions = ["a", "a", "b", " ", "c", "d", "e"]
    assert caption_prompts(captions, 10) == ["a", "b", "c", "d", "e"]
    assert caption_prompts(captions, 3) == ["a", "c", "e"]
    assert caption_prompts(["x"], 1) == ["x"]


def test_the_same_command_again_calibrates_a_finished_file_that_lacks_its_curve(pipe, tmp_path, monkeypatch):
    """A run stopped while it calibrated leaves its output complete but uncalibrated (the
    curve is written after the final save): running the same command again fits it."""
    folder = make_dataset(tmp_path / "data")
    monkeypatch.setenv("HYPERNET_CALIBRATE", "0")  # the output as such a stop leaves it
    train(pipe, new_network(), config(tmp_path, folder), output=tmp_path / "out.pt", progress=False, log=lambda m: None)
    assert hypernet.load(tmp_path / "out.pt").metadata.multiplier_calibration is None
    monkeypatch.setenv("HYPERNET_CALIBRATE", "1")
    messages = []
    result = train(pipe, hypernet.load(tmp_path / "out.pt"), config(tmp_path, folder), output=tmp_path / "out.pt",
                   progress=False, log=messages.append)
    assert result.stop_reason == "already finished" and result.calibration is not None
    assert any("never calibrated" in m for m in messages) and any(m.startswith("nothing to do") for m in messages)
    curve = hypernet.load(tmp_path / "out.pt").metadata.multiplier_calibration
    assert curve is not None and tuple(map(tuple, curve)) == tuple(result.calibration.curve)
    messages.clear()  # and once it has its curve, nothing more is done
    again = train(pipe, hypernet.load(tmp_path / "out.pt"), config(tmp_path, folder), output=tmp_path / "out.pt",
                  progress=False, log=messages.append)
    assert again.calibration is None and not any("never calibrated" in m for m in messages)
