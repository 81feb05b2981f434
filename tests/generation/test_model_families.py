"""Which model families a file's sizes fit (`hypernet inspect`), and the warning when a
tagged file has no size the loaded UNet uses (the webui applies nothing, silently)."""

import json

import pytest
import torch

import hypernet
from hypernet import attention
from hypernet.cli import main
from hypernet.generation import Generator, ModelInfo, Request
from hypernet.inspection import fitting_families, inspect_file
from hypernet.library import Library
from hypernet.network import Hypernetwork
from tiny_models import SELF_SIZES, TEXT_WIDTH


def test_sizes_name_the_families_they_fit():
    assert fitting_families([2048, 640, 1280]) == {
        "SD 1.x": {"sizes": [640, 1280], "cross_attention": False},
        "SD 2.x": {"sizes": [640, 1280], "cross_attention": False},
        "SDXL": {"sizes": [2048, 640, 1280], "cross_attention": True},
    }
    assert list(fitting_families([768, 320])) == ["SD 1.x", "SD 2.x"]
    assert fitting_families([768, 320])["SD 2.x"]["cross_attention"] is False
    assert fitting_families([1024])["SD 2.x"]["cross_attention"] is True
    assert fitting_families([80, 32]) == {}


def test_create_an_sdxl_network_and_inspect_says_it_fits_sdxl(tmp_path, capsys):
    assert main(["create", "xl", "--sizes", "2048,640,1280", "--dir", str(tmp_path), "--seed", "1"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "xl.pt")]) == 0
    text = capsys.readouterr().out
    line = next(row for row in text.splitlines() if row.startswith("fits"))
    assert "SDXL (2048, 640, 1280)" in line and "SD 1.x (640, 1280: self-attention only)" in line
    info = inspect_file(tmp_path / "xl.pt")
    assert info["sizes"] == [2048, 640, 1280] and info["families"]["SDXL"]["cross_attention"]
    assert main(["inspect", "--json", str(tmp_path / "xl.pt")]) == 0
    assert json.loads(capsys.readouterr().out)["families"]["SDXL"]["sizes"] == [2048, 640, 1280]


def test_a_file_with_no_size_of_the_model_warns_and_changes_nothing(pipe, tmp_path):
    root = tmp_path / "hypernetworks"
    hypernet.save(Hypernetwork.create(sizes=[2048, 640, 1280], weight_init="XavierNormal", generator_seed=1,
                                      name="xl"), root / "xl.pt")
    hypernet.save(Hypernetwork.create(sizes=[TEXT_WIDTH, *SELF_SIZES], weight_init="XavierNormal", generator_seed=1,
                                      name="fits"), root / "fits.pt")
    generator = Generator(pipe, library=Library(root), model=ModelInfo(name="tiny"))
    try:
        request = dict(steps=2, seed=3, width=32, height=32, sampler="Euler")
        plain = generator.generate(Request(prompt="a red circle", **request), progress=False)[0]
        assert generator.warnings == []
        tagged = generator.generate(Request(prompt="a red circle <hypernet:xl:1>", **request), progress=False)[0]
        generator.generate(Request(prompt="a red circle <hypernet:xl:0.5>", **request), progress=False)
        assert len(generator.warnings) == 1  # once per file, not per request
        [warning] = generator.warnings
        assert "'xl'" in warning and "2048, 640, 1280" in warning and "32, 48, 64" in warning and "SDXL" in warning
        assert tagged.image.tobytes() == plain.image.tobytes()
        generator.generate(Request(prompt="a red circle <hypernet:fits:1>", **request), progress=False)
        assert len(generator.warnings) == 1
    finally:
        attention.uninstall(pipe.unet)


@pytest.mark.needs_toy_model
def test_the_command_line_prints_the_warning_once_on_stderr(tmp_path, capsys):
    library = tmp_path / "library"
    assert main(["create", "xl", "--sizes", "2048,640,1280", "--dir", str(library), "--seed", "1"]) == 0
    capsys.readouterr()
    code = main(["generate", "a red circle <hypernet:xl:1>", "a blue square <hypernet:xl:1>", "--seed", "1",
                 "--steps", "2", "--size", "32x32", "--quiet", "--out", str(tmp_path / "out"),
                 "--hypernet-dir", str(library)])
    assert code == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(lines) == 1 and "'xl' changes nothing on this model" in lines[0]
