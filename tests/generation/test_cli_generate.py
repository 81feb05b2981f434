"""`hypernet generate` from the command line, on the embedded toy model."""

import pytest

from hypernet.cli import main
from hypernet.infotext import read_png_infotext

pytestmark = pytest.mark.needs_toy_model


def test_several_prompts_in_one_run_each_get_a_png_with_its_infotext(tmp_path, capsys):
    out = tmp_path / "out"
    prompts = ["a red circle on a blue background", "a red circle on a blue background <hypernet:water:0.7>"]
    code = main(["generate", *prompts, "--seed", "1", "--steps", "4", "--quiet", "--out", str(out),
                 "--hypernet-dir", str(tmp_path / "empty-library")])
    assert code == 0
    written = sorted(out.glob("*.png"))
    assert len(written) == 2 and len(capsys.readouterr().out.splitlines()) == 2
    first, second = (read_png_infotext(path) for path in written)
    assert first.startswith(prompts[0] + "\n") and "Seed: 1," in first and "Hypernet" not in first
    assert "<hypernet:water:0.7>" in second and "Seed: 1," in second


def test_no_prompt_is_a_clear_error(capsys):
    assert main(["generate"]) == 2
    assert "PROMPT" in capsys.readouterr().err
