"""The X/Y/Z plot: axis parsing without a model, real plots on the tiny pipeline, and
`hypernet xyz` on the embedded toy model."""

import re

import numpy as np
import pytest
from PIL import Image

import hypernet
from hypernet import attention
from hypernet.errors import HypernetError
from hypernet.generation import Generator, ModelInfo, Request
from hypernet.grid import grid_layout
from hypernet.infotext import read_png_infotext, write_png
from hypernet.library import Library
from hypernet.network import Hypernetwork
from hypernet.outputs import request_from_infotext
from hypernet.xyz import Axis, parse_axis, set_network, split_values, xyz_plot
from tiny_models import SELF_SIZES, TEXT_WIDTH


# -- parsing ------------------------------------------------------------------------------
@pytest.mark.parametrize("spec,kind,values", [
    ("steps:10-20 (+5)", "steps", (10, 15, 20)),
    ("Steps: 1-5", "steps", (1, 2, 3, 4, 5)),
    ("seed:10-0 (-2)", "seed", (10, 8, 6, 4, 2, 0)),
    ("seed:3-1", "seed", (3, 2, 1)),
    ("CFG Scale:1-10 (+3)", "cfg", (1.0, 4.0, 7.0, 10.0)),
    ("multiplier:0-1 [5]", "multiplier", (0.0, 0.25, 0.5, 0.75, 1.0)),
    ("strength:0, 0.1-0.3 (+0.1), 2", "multiplier", (0.0, 0.1, 0.2, 0.3, 2.0)),
    ("steps:1-9 [3], 20", "steps", (1, 5, 9, 20)),
    ("clip_skip:1,2", "clip skip", (1, 2)),
    ("Hypernetwork:water,None, neon", "hypernet", ("water", None, "neon")),
    ('sampler:"Euler a", ddim, dpm++ 2m karras', "sampler", ("Euler a", "DDIM", "DPM++ 2M Karras")),
    ("size:64x64, 32X48", "size", ((64, 64), (32, 48))),
    ('Prompt S/R:red, "blue, dark", green', "prompt", ("red", "blue, dark", "green")),
    ("checkpoint:Default", "checkpoint", (None,)),
])
def test_axes_parse_like_the_webuis(spec, kind, values):
    assert parse_axis(spec) == Axis(kind, values)


def test_values_are_csv_with_quotes():
    assert split_values('a, "b, c",d ') == ["a", "b, c", "d"]
    assert split_values('"say ""hi""", x') == ['say "hi"', "x"]


@pytest.mark.parametrize("spec,message", [
    ("steps:ten", "steps axis: value 'ten' is not a whole number"),
    ("steps:0", "steps axis: value '0' must be at least 1"),
    ("steps:1.5", "steps axis: value '1.5' is not a whole number"),
    ("cfg:7,x", "cfg axis: value 'x' is not a number"),
    ("cfg:1-5 (-1)", "cfg axis: value '1-5 (-1)' step -1 never goes from 1 to 5"),
    ("seed:0-5000", "makes 5001 values"),
    ("seed:-2", "seed axis: value '-2' must be -1 (random)"),
    ("sampler:Euler a,Eulr", "sampler axis: value 'Eulr' is not a sampler; valid names: Euler a"),
    ("size:65x64", "size axis: value '65x64' must have a width and height that are positive multiples of 8"),
    ("size:64", "size axis: value '64' must look like 512x512"),
    ("checkpoint:no/such/model.safetensors", "checkpoint axis: value 'no/such/model.safetensors' is not a checkpoint"),
    ("colour:red", "unknown axis type 'colour'; valid: hypernet, multiplier, sampler"),
    ("steps", "must look like TYPE:VALUES"),
    ("steps:", "steps axis has no values"),
    ("prompt:,red", "the first value is the text to search for"),
])
def test_bad_axes_are_one_line_errors_naming_axis_and_value(spec, message):
    with pytest.raises(HypernetError, match=re.escape(message)) as caught:
        parse_axis(spec)
    assert "\n" not in str(caught.value)


def test_the_hypernet_axis_owns_its_networks_tags():
    owned = ["water", "neon"]
    assert set_network("a <hypernet:water:0.5> cat <hypernet:neon> x", owned, "neon", 0.5) == "a <hypernet:neon:0.5> cat x"
    assert set_network("a <hypernet:water:0.5> cat", owned, None, 1) == "a cat"
    assert set_network("a <hypernet:other:2> cat", owned, "water", 1) == "a <hypernet:other:2> cat <hypernet:water:1>"


def never_loaded(model):
    raise AssertionError("a model was loaded although the plot is invalid")


@pytest.mark.parametrize("prompt,axes,message", [
    ("a cat", ["steps:1,2", "Steps:3"], "the steps axis is given twice"),
    ("a cat", ["multiplier:0,1"], "multiplier axis: the prompt has no <hypernet:NAME> tag and there is no hypernet axis"),
    ("a cat", ["prompt:dog,cow"], "Prompt S/R\\): 'dog' is not in the prompt"),
    ("a cat", [], "give at least one axis"),
    ("a cat", ["hypernet:a,watr"], "hypernet axis: no hypernetwork named 'watr'"),
])
def test_plots_are_checked_before_any_model_loads(tmp_path, prompt, axes, message):
    with pytest.raises(HypernetError, match=message):
        xyz_plot(never_loaded, Request(prompt), *[parse_axis(a) for a in axes], library=make_library(tmp_path))


# -- real plots on the tiny pipeline ------------------------------------------------------
def make_library(tmp_path):
    root = tmp_path / "lib"
    for seed, name in ((1, "a"), (2, "b")):
        network = Hypernetwork.create(sizes=[TEXT_WIDTH, *SELF_SIZES], weight_init="XavierNormal", generator_seed=seed,
                                      name=name)
        hypernet.save(network, root / f"{name}.pt")
    return Library(root)


@pytest.fixture
def generator(pipe, tmp_path):
    generator = Generator(pipe, library=make_library(tmp_path), model=ModelInfo("tiny"))
    yield generator
    attention.uninstall(pipe.unet)


def pixels(image):
    return np.asarray(image).astype(int)


def single(generator, request):
    return pixels(generator.generate(request, progress=False)[0].image)


def reproduced(generator, result, tmp_path):
    """The image `generate` makes from the cell's PNG infotext (as --from-png does)."""
    path = write_png(result.image, tmp_path / "cell.png", result.infotext)
    assert pixels(Image.open(path)).tolist() == pixels(result.image).tolist()
    return single(generator, request_from_infotext(read_png_infotext(path)))


def test_a_two_by_two_plot_is_four_single_generations(generator, tmp_path):
    base = Request("a red circle", steps=2, sampler="DDIM", width=32, height=32, seed=3)
    x, y = parse_axis("hypernet:a,b"), parse_axis("multiplier:0.5,1")
    result = xyz_plot(lambda model: generator, base, x, y, library=generator.library)

    assert result.labels == (["hypernet: a", "hypernet: b"], ["multiplier: 0.5", "multiplier: 1"], [""])
    assert [(c.x, c.y, c.z) for c in result.cells] == [(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0)]
    assert [c.labels for c in result.cells][1] == ["hypernet: b", "multiplier: 0.5"]
    layout = grid_layout((32, 32), result.labels[1], result.labels[0])
    assert result.image.size == (layout.width, layout.height) and len(result.grids) == 1
    made = {}
    for cell in result.cells:
        name, multiplier = "ab"[cell.x], (0.5, 1)[cell.y]
        expected = single(generator, Request(f"a red circle <hypernet:{name}:{multiplier}>", steps=2, sampler="DDIM",
                                             width=32, height=32, seed=3))
        assert pixels(cell.result.image).tolist() == expected.tolist(), cell.labels
        assert reproduced(generator, cell.result, tmp_path).tolist() == expected.tolist(), cell.labels
        box = layout.cell_box(cell.y, cell.x)
        shown = result.image.crop(box).resize((32, 32), Image.NEAREST)
        assert pixels(shown).tolist() == expected.tolist(), f"{cell.labels} is not where its labels are"
        made[(name, multiplier)] = expected
    assert np.abs(made[("a", 1)] - made[("b", 1)]).sum() > 0  # the axis really changes the picture
    assert np.abs(made[("a", 1)] - made[("a", 0.5)]).sum() > 0
    assert result.infotext == result.cells[0].result.infotext


def test_a_two_by_two_by_two_plot_with_sampler_prompt_and_clip_skip(generator, tmp_path):
    base = Request("a red circle", negative_prompt="red noise", steps=2, width=32, height=32, seed=-1)
    x, y, z = parse_axis('sampler:"Euler a",DDIM'), parse_axis("prompt s/r:red,green"), parse_axis("clip skip:1,2")
    result = xyz_plot(lambda model: generator, base, x, y, z)

    assert len(result.cells) == 8 and len(result.grids) == 2
    assert result.labels == (["Sampler: Euler a", "Sampler: DDIM"], ["red", "green"], ["Clip skip: 1", "Clip skip: 2"])
    seeds = {cell.result.seed for cell in result.cells}
    assert len(seeds) == 1  # a random seed is drawn once, for every cell
    seed = seeds.pop()
    gap = result.image.width - 2 * result.grids[0].width
    assert gap > 0 and result.image.height == max(g.height for g in result.grids)
    outputs = []
    for cell in result.cells:
        colour = ("red", "green")[cell.y]
        request = Request(f"a {colour} circle", negative_prompt=f"{colour} noise", steps=2, width=32, height=32,
                          seed=seed, sampler=("Euler a", "DDIM")[cell.x], clip_skip=(1, 2)[cell.z])
        expected = single(generator, request)
        assert pixels(cell.result.image).tolist() == expected.tolist(), cell.labels
        assert reproduced(generator, cell.result, tmp_path).tolist() == expected.tolist(), cell.labels
        outputs.append(expected)
    assert all(np.abs(outputs[0] - other).sum() > 0 for other in outputs[1:])
    assert "Clip skip: 2" in result.cells[-1].result.infotext


def test_cells_of_one_model_run_back_to_back_and_each_model_loads_once(generator, tmp_path, monkeypatch):
    first, second = tmp_path / "model-one", tmp_path / "model-two"
    first.mkdir(), second.mkdir()
    loaded, made = [], []
    original = generator.generate

    def generate(request, **kwargs):
        made.append((loaded[-1], request.steps))
        return original(request, **kwargs)

    monkeypatch.setattr(generator, "generate", generate)

    def generator_for_model(model):
        loaded.append(model)
        return generator

    base = Request("a red circle", steps=2, width=32, height=32, seed=1)
    result = xyz_plot(generator_for_model, base, parse_axis("steps:1,2"), parse_axis(f"checkpoint:{first},default,{second}"))
    assert loaded == [str(first), None, str(second)]
    assert made == [(str(first), 1), (str(first), 2), (None, 1), (None, 2), (str(second), 1), (str(second), 2)]
    assert result.labels[1] == ["Checkpoint name: model-one", "Checkpoint name: default", "Checkpoint name: model-two"]


@pytest.mark.parametrize("base,axis,message", [
    (Request("a cat", steps=1, width=32, height=32), "size:32x32,99992x99992", "memory"),
    (Request("a cat", steps=1, width=32, height=32, schedule="Karras"), "sampler:Euler,DDIM",
     "sampler 'DDIM' does not support the Karras schedule"),
    (Request("a cat <hypernet:nope:1>", steps=1, width=32, height=32), "steps:1,2", "no hypernetwork named 'nope'"),
])
def test_what_needs_the_model_is_refused_before_the_first_image(generator, base, axis, message):
    calls = []
    generator.generate = lambda *a, **k: calls.append(1)
    with pytest.raises(HypernetError, match=message):
        xyz_plot(lambda model: generator, base, parse_axis(axis))
    assert calls == []


# -- the command ------------------------------------------------------------------------------
@pytest.mark.needs_toy_model
def test_cli_writes_the_grid_and_cells_that_reproduce(tmp_path, capsys):
    from hypernet.cli import main

    out = tmp_path / "out"
    code = main(["xyz", "a red circle on a blue background", "--x", "hypernet:water,none", "--steps", "2",
                 "--size", "32x32", "--seed", "1", "--quiet", "--out", str(out)])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    cells = sorted(out.glob("0*.png"))
    assert len(cells) == 2 and [line.split("  ")[1] for line in lines[:2]] == ["hypernet: water", "hypernet: none"]
    assert lines[2] == f"{out / 'xyz-00000.png'}  (2 x 1 x 1 cells)"
    assert read_png_infotext(out / "xyz-00000.png") == read_png_infotext(cells[0])
    assert "<hypernet:water:1>" in read_png_infotext(cells[0]) and "<hypernet:" not in read_png_infotext(cells[1])
    again = tmp_path / "again"
    assert main(["generate", "--from-png", str(cells[0]), "--quiet", "--out", str(again)]) == 0
    assert pixels(Image.open(next(again.glob("*.png")))).tolist() == pixels(Image.open(cells[0])).tolist()


def test_cli_bad_value_is_a_one_line_error_before_the_model_loads(tmp_path, capsys, monkeypatch):
    from hypernet import loading
    from hypernet.cli import main

    monkeypatch.setattr(loading, "load_generator", never_loaded)
    code = main(["xyz", "a cat", "--x", "hypernet:watr,neon", "--out", str(tmp_path / "out")])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1
    assert error.startswith("hypernet xyz: error: hypernet axis: no hypernetwork named 'watr'") and "water" in error
    with pytest.raises(SystemExit):
        main(["xyz", "a cat", "--y", "steps:ten"])
    assert "steps axis: value 'ten' is not a whole number" in capsys.readouterr().err


def test_progress_counts_images_and_times_what_is_left(capsys, monkeypatch):
    from hypernet import xyz

    clock = iter([100.0, 102.0, 104.0, 106.0])
    monkeypatch.setattr(xyz.time, "monotonic", lambda: next(clock))
    progress = xyz.ProgressLine(4)
    for done in range(1, 5):
        progress(done)
    assert capsys.readouterr().err.splitlines() == ["xyz: 1/4 images", "xyz: 2/4 images, 0:04 left",
                                                    "xyz: 3/4 images, 0:02 left", "xyz: 4/4 images"]
