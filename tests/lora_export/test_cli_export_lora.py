"""`hypernet export-lora` on the embedded toy model, `hypernet inspect` on what it wrote,
and the acceptance check: `<lora:water-lora:1>` draws what `<hypernet:water:1>` draws."""

import json

import numpy as np
import pytest

from hypernet.cli import main
from hypernet.cli.defaults import toy_model_loader
from hypernet.generation import Request
from hypernet.loading import load_generator

pytestmark = pytest.mark.needs_toy_model


def psnr(first: np.ndarray, second: np.ndarray) -> float:
    error = float(((first.astype(np.float64) - second.astype(np.float64)) ** 2).mean())
    return float("inf") if error == 0 else 10 * np.log10(255.0**2 / error)


def test_export_inspect_and_the_same_picture(tmp_path, capsys):
    loras = tmp_path / "Lora"
    out = loras / "water-lora.safetensors"
    assert main(["export-lora", "water", str(out), "--hypernet-dir", str(tmp_path / "none")]) == 0
    printed = capsys.readouterr().out
    assert "exact (affine network)" in printed and "attn1.to_v" in printed and "folded" in printed
    assert main(["export-lora", "water", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err

    assert main(["inspect", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "LoRA (kohya layout)" in shown and "exported from  water" in shown and "hypernet-toy" in shown
    assert main(["inspect", "--json", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["export"]["multiplier"] == 1 and info["export"]["method"] == "exact"

    generator = load_generator(None, hypernet_dir=tmp_path / "none", lora_dir=loras, progress=False,
                               default_model=toy_model_loader())
    try:
        for seed, prompt in enumerate(["a red circle on a blue background", "a green triangle on a white background"]):
            pictures = [np.asarray(generator.generate(Request(prompt=f"{prompt} {tag}", steps=8, seed=seed), progress=False)[0].image)
                        for tag in ("<hypernet:water:1>", "<lora:water-lora:1>", "")]
            assert psnr(pictures[0], pictures[1]) > 60 and np.abs(pictures[0].astype(int) - pictures[1]).max() <= 2
            assert psnr(pictures[0], pictures[2]) < 40  # the network does change the picture
    finally:
        generator.close()


def test_a_nonlinear_network_is_fitted_on_the_prompts_given(tmp_path, capsys):
    library = tmp_path / "lib"
    assert main(["create", "ripple", "--sizes", "80", "--activation", "relu", "--layer-norm", "--dir", str(library),
                 "--seed", "0", "--weight-init", "Normal"]) == 0  # ZeroLast would start as the identity: nothing to fit
    capsys.readouterr()
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# prompts\na red circle on a blue background\n\na green cross on a black background\n")
    out = tmp_path / "ripple.safetensors"
    assert main(["export-lora", "ripple", str(out), "--hypernet-dir", str(library), "--prompts", str(prompts),
                 "--steps", "2", "--rank", "4", "--format", "diffusers", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["method"] == "fit" and {layer["rank"] for layer in report["layers"]} == {4}
    assert main(["inspect", "--json", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["layout"] == "diffusers" and info["ranks"] == [4]
    assert info["export"]["method"] == "fit" and info["export"]["fit_error"]["prompts"] == 2
    assert "fitting prompts" in info["export"]["fit_error"]["measured_on"]  # too few prompts to hold any out


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    assert main(["export-lora", "water", str(tmp_path / "x.pt")]) == 2
    assert ".safetensors" in capsys.readouterr().err
    assert main(["export-lora", "nosuch", str(tmp_path / "x.safetensors"), "--hypernet-dir", str(tmp_path)]) == 2
    assert "nosuch" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export-lora", "water", str(tmp_path / "x.safetensors"), "--rank", "4", "--error", "0.1"])
    with pytest.raises(SystemExit):
        main(["export-lora", "water", str(tmp_path / "x.safetensors"), "--rank", "0"])
