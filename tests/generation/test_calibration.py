"""Calibrated multipliers: the curve in the file's metadata, the multiplier it gives the
MLPs, the fit from a progress proxy, and `hypernet calibrate`."""

import math
import shutil

import numpy as np
import pytest
import torch

import hypernet
from core.webui_rules import webui_would_refuse
from hypernet import attention, formats
from hypernet.calibration import fit_calibration, invert, make_monotone, projection_progress
from hypernet.errors import HypernetConfigError, HypernetFileError
from hypernet.generation import Generator, ModelInfo, Request
from hypernet.library import Library
from hypernet.multipliers import CALIBRATION_KEY, check_calibration, effective_multiplier
from hypernet.network import Hypernetwork
from tiny_models import SELF_SIZES, TEXT_WIDTH

CURVE = ((0.0, 0.0), (0.5, 0.8), (1.0, 1.0))


def network(curve=CURVE, activation="linear"):
    made = Hypernetwork.create(sizes=[TEXT_WIDTH, *SELF_SIZES], weight_init="XavierNormal", generator_seed=1,
                               name="s", activation=activation)
    made.metadata.multiplier_calibration = curve
    return made


# -- the curve ---------------------------------------------------------------------------
def test_effective_multiplier_interpolates_mirrors_and_is_the_identity_beyond_one():
    assert effective_multiplier(CURVE, 0) == 0.0 and math.copysign(1, effective_multiplier(CURVE, -0.0)) == 1
    assert effective_multiplier(CURVE, 0.25) == pytest.approx(0.4)
    assert effective_multiplier(CURVE, 0.5) == pytest.approx(0.8)
    assert effective_multiplier(CURVE, 0.75) == pytest.approx(0.9)
    assert effective_multiplier(CURVE, 1.0) == 1.0 and effective_multiplier(CURVE, 1.5) == 1.5
    assert effective_multiplier(CURVE, -0.5) == pytest.approx(-0.8)
    assert effective_multiplier(None, 0.5) == 0.5
    assert network().effective_multiplier(0.5) == pytest.approx(0.8)
    assert network(None).effective_multiplier(0.5) == 0.5


@pytest.mark.parametrize("bad", [[], [[0, 0]], [[0, 0], [0.5, 0.5]], [[0.1, 0], [1, 1]], [[0, 0], [0.5, 0.6], [0.4, 0.7], [1, 1]],
                                 [[0, 0], [0.5, 1.0], [1, 1]], [[0, 0], ["a", 1], [1, 1]], [[0, 0], [float("nan"), 0.5], [1, 1]],
                                 "0,0,1,1", [[0, 0, 0], [1, 1]]])
def test_a_malformed_curve_is_refused(bad):
    with pytest.raises(HypernetConfigError):
        check_calibration(bad)


# -- the fit -------------------------------------------------------------------------------
def synthetic(progress_of):
    direction = torch.linspace(-1, 1, 48).reshape(3, 16)
    base = torch.rand(3, 16, generator=torch.Generator().manual_seed(0))
    return lambda m: base + progress_of(m) * direction


def test_a_cliff_is_inverted():
    calibration = fit_calibration(synthetic(lambda m: m ** 4), proxy="pixels")
    curve = dict(calibration.curve)
    assert curve[0.5] == pytest.approx(0.84, abs=0.01)
    assert calibration.curve[0] == (0.0, 0.0) and calibration.curve[-1] == (1.0, 1.0)
    assert calibration.measured[0.5] == pytest.approx(0.0625, abs=1e-5)
    for user, progress in calibration.after.items():
        assert abs(progress - user) < 0.05


def test_the_identity_gives_the_identity_curve():
    calibration = fit_calibration(synthetic(lambda m: m), proxy="pixels")
    assert all(internal == pytest.approx(user, abs=1e-4) for user, internal in calibration.curve)
    assert len(calibration.curve) == 21


def test_noise_and_overshoot_are_made_monotone_and_the_curve_strictly_increasing():
    noise = {0.1: 0.05, 0.2: -0.02, 0.3: 0.2, 0.4: 0.15, 0.5: 0.5, 0.6: 0.45, 0.7: 1.1, 0.8: 0.9, 0.9: 1.2}
    calibration = fit_calibration(synthetic(lambda m: noise.get(round(m, 1), m)), proxy="pixels")
    monotone = [calibration.monotone[m] for m in sorted(calibration.monotone)]
    assert monotone == sorted(monotone) and 0 <= min(monotone) and max(monotone) == 1
    check_calibration(calibration.curve)  # strictly increasing, (0, 0) to (1, 1)
    assert make_monotone({0.0: 0.3, 0.5: 0.2, 1.0: 0.9}) == {0.0: 0.0, 0.5: 0.3, 1.0: 1.0}
    assert invert({0.0: 0.0, 0.5: 1.0, 1.0: 1.0}, user_step=0.5) == ((0.0, 0.0), (0.5, 0.25), (1.0, 1.0))


def test_the_texture_proxy_sees_a_texture_the_pixel_average_hides():
    base = torch.full((2, 16, 16, 3), 0.5)
    stripes = base.clone()
    stripes[:, ::2] += 0.2
    stripes[:, 1::2] -= 0.2  # the same mean, a texture
    calibration = fit_calibration(lambda m: base + (m ** 3) * (stripes - base), proxy="features")
    assert dict(calibration.curve)[0.5] == pytest.approx(0.5 ** (1 / 3), abs=0.03)
    pixels = fit_calibration(lambda m: base + (m ** 3) * (stripes - base), proxy="pixels")
    assert dict(pixels.curve)[0.5] == pytest.approx(0.5 ** (1 / 3), abs=0.03)
    with pytest.raises(hypernet.HypernetError, match="proxy"):
        fit_calibration(lambda m: base, proxy="judge")


def test_a_network_that_changes_nothing_cannot_be_calibrated():
    with pytest.raises(hypernet.HypernetError, match="nothing to calibrate"):
        projection_progress(torch.ones(2, 3), torch.ones(2, 3), torch.ones(2, 3))


# -- files ---------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_the_curve_round_trips_and_a_file_without_one_has_no_key(tmp_path, suffix):
    path = hypernet.save(network(), tmp_path / f"n{suffix}")
    loaded = formats.load(path)
    assert loaded.metadata.multiplier_calibration == CURVE and CALIBRATION_KEY not in loaded.metadata.extra
    again = hypernet.save(loaded, tmp_path / f"again{suffix}")  # what convert and training checkpoints do
    assert formats.load(again).metadata.multiplier_calibration == CURVE
    plain = formats.load(hypernet.save(network(None), tmp_path / f"plain{suffix}"))
    assert plain.metadata.multiplier_calibration is None


def test_inspect_shows_the_curve(tmp_path):
    from hypernet.inspection import format_description, inspect_file

    info = inspect_file(hypernet.save(network(), tmp_path / "n.pt"))
    assert info["multiplier_calibration"] == [[0.0, 0.0], [0.5, 0.8], [1.0, 1.0]]
    assert "0.5 -> 0.8" in format_description(info)
    assert inspect_file(hypernet.save(network(None), tmp_path / "p.pt"))["multiplier_calibration"] is None


def test_the_pt_key_is_plain_data_the_webui_accepts(tmp_path):
    path = hypernet.save(network(), tmp_path / "n.pt")
    assert webui_would_refuse(path) == []
    data = torch.load(path, weights_only=True)
    assert data[CALIBRATION_KEY] == [[0.0, 0.0], [0.5, 0.8], [1.0, 1.0]]
    plain = torch.load(hypernet.save(network(None), tmp_path / "p.pt"), weights_only=True)
    assert CALIBRATION_KEY not in plain


def test_a_malformed_curve_in_a_file_names_the_file_and_the_key(tmp_path):
    from hypernet.formats.torchfile import write_torch_file
    from hypernet.formats.webui import network_to_dict

    data = network_to_dict(network(None))
    data[CALIBRATION_KEY] = [[0, 0], [0.5, 2.0]]
    write_torch_file(data, tmp_path / "bad.pt")
    with pytest.raises(HypernetFileError) as caught:
        formats.load(tmp_path / "bad.pt")
    assert "bad.pt" in str(caught.value) and CALIBRATION_KEY in str(caught.value)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_write_calibration_changes_only_the_key(tmp_path, suffix):
    original = network(None)
    path = hypernet.save(original, tmp_path / f"n{suffix}")
    before = {k: v for k, v in torch.load(path, weights_only=True).items()} if suffix == ".pt" else None
    formats.write_calibration(path, CURVE)
    assert formats.load(path).metadata.multiplier_calibration == CURVE
    if suffix == ".pt":
        after = torch.load(path, weights_only=True)
        assert all(torch.equal(after[s][i][k], before[s][i][k]) for s in original.sizes for i in (0, 1) for k in before[s][i])
        assert webui_would_refuse(path) == []
    formats.write_calibration(path, None)
    assert formats.load(path).metadata.multiplier_calibration is None


def test_write_calibration_keeps_half_precision_bytes_and_rehashes_the_optimizer_sidecar(tmp_path):
    from hypernet.formats.torchfile import write_torch_file
    from hypernet.formats.webui import network_to_dict

    data = network_to_dict(network(None))
    for size in network(None).sizes:
        data[size] = tuple({k: v.half() for k, v in state.items()} for state in data[size])
    path = tmp_path / "h.pt"
    write_torch_file(data, path)
    formats.write_optimizer_state(path, "AdamW", {"state": {}, "param_groups": []})
    formats.write_calibration(path, CURVE)
    after = torch.load(path, weights_only=True)
    assert all(torch.equal(after[s][i][k], data[s][i][k]) and after[s][i][k].dtype == torch.float16
               for s in network(None).sizes for i in (0, 1) for k in data[s][i])
    assert formats.read_optimizer_state(path) is not None


# -- generation ----------------------------------------------------------------------------
def unet_output(pipe, chain, fold=True, rows=None):
    torch.manual_seed(0)
    sample = torch.randn(2, pipe.unet.config.in_channels, 8, 8)
    context = torch.randn(2, 7, TEXT_WIDTH)
    with torch.no_grad():
        if rows is not None:
            with attention.activate_rows(pipe.unet, rows, fold=fold):
                return pipe.unet(sample, 10, encoder_hidden_states=context).sample
        with attention.activate(pipe.unet, chain, fold=fold):
            return pipe.unet(sample, 10, encoder_hidden_states=context).sample


@pytest.mark.parametrize("fold", [True, False])
@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_the_unet_runs_the_calibrated_multiplier_and_zero_is_bit_identical(pipe, fold, activation):
    calibrated, plain = network(CURVE, activation), network(None, activation)
    try:
        assert torch.equal(unet_output(pipe, [(calibrated, 0.5)], fold), unet_output(pipe, [(plain, 0.8)], fold))
        assert torch.equal(unet_output(pipe, [(calibrated, 1.3)], fold), unet_output(pipe, [(plain, 1.3)], fold))
        assert torch.equal(unet_output(pipe, [(calibrated, 0.0)], fold), unet_output(pipe, [], fold))
        other = network(None, activation)
        rows = unet_output(pipe, None, fold, rows=[[(calibrated, 0.5)], [(other, 0.3)]])
        alone = unet_output(pipe, None, fold, rows=[[(plain, 0.8)], [(other, 0.3)]])
        assert torch.allclose(rows, alone, atol=1e-6)
        same = unet_output(pipe, None, fold, rows=[[(calibrated, 0.5)], [(calibrated, 0.5)]])  # one chain: calibrated once
        assert torch.equal(same, unet_output(pipe, [(plain, 0.8)], fold))
    finally:
        attention.uninstall(pipe.unet)


def test_generation_keeps_the_users_multiplier_in_the_infotext(pipe, tmp_path):
    root = tmp_path / "lib"
    hypernet.save(network(), root / "s.pt")
    hypernet.save(network(None), root / "p.pt")
    generator = Generator(pipe, library=Library(root), model=ModelInfo("tiny"))
    try:
        request = Request(prompt="a red circle <hypernet:s:0.5>", steps=2, sampler="DDIM", width=32, height=32, seed=1)
        calibrated = generator.generate(request, progress=False)[0]
        plain = generator.generate(Request(prompt="a red circle <hypernet:p:0.8>", steps=2, sampler="DDIM", width=32,
                                           height=32, seed=1), progress=False)[0]
    finally:
        generator.close()
    assert calibrated.networks == [("s", 0.5)] and "<hypernet:s:0.5>" in calibrated.infotext
    assert np.array_equal(np.asarray(calibrated.image), np.asarray(plain.image))


# -- the command ---------------------------------------------------------------------------
FAST = ["--prompts", "1", "--seeds", "1", "--steps", "2", "--grid", "0,0.5,1", "--quiet"]


@pytest.mark.needs_toy_model
def test_calibrate_command_on_the_toy_model(tmp_path, capsys):
    from hypernet.cli import main
    from hypernet.loading import PACKAGED_LIBRARY

    library = tmp_path / "lib"
    library.mkdir()
    shutil.copy(PACKAGED_LIBRARY / "neon.pt", library / "neon.pt")
    packaged = (PACKAGED_LIBRARY / "water.pt").read_bytes()
    assert main(["calibrate", "neon", "--hypernet-dir", str(library), *FAST]) == 0
    out = capsys.readouterr().out
    assert "user multiplier -> internal multiplier" in out and "wrote the calibration curve" in out
    curve = formats.load(library / "neon.pt").metadata.multiplier_calibration
    assert curve[0] == (0.0, 0.0) and curve[-1] == (1.0, 1.0) and len(curve) > 2
    before, after = formats.load(PACKAGED_LIBRARY / "neon.pt"), formats.load(library / "neon.pt")
    assert all(torch.equal(a, b) for a, b in zip(before.state_dict().values(), after.state_dict().values()))
    assert webui_would_refuse(library / "neon.pt") == []
    # a packaged network goes to the library folder, the package's file is untouched
    assert main(["calibrate", "water", "--hypernet-dir", str(library), *FAST]) == 0
    assert (PACKAGED_LIBRARY / "water.pt").read_bytes() == packaged
    assert formats.load(library / "water.pt").metadata.multiplier_calibration is not None
    assert main(["calibrate", "neon", "--hypernet-dir", str(library), "--remove"]) == 0
    assert formats.load(library / "neon.pt").metadata.multiplier_calibration is None


def test_calibrate_command_errors_are_one_line(tmp_path, capsys):
    from hypernet.cli import main

    assert main(["calibrate", str(tmp_path / "missing.pt"), "--hypernet-dir", str(tmp_path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    path = hypernet.save(network(None), tmp_path / "n.pt")
    assert main(["calibrate", str(path), "--size", "30x30", "--quiet"]) == 2
    assert "multiples of 8" in capsys.readouterr().err
    assert main(["calibrate", str(path), "--grid", "0.1,1", "--quiet"]) == 2
    with pytest.raises(SystemExit):
        main(["calibrate", str(path), "--size", "big"])
