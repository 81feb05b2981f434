import json

import pytest
import torch

import hypernet
from hypernet.cli import main
from hypernet.inspection import inspect_file


def four_size_params(d):
    # one 1-2-1 module: Linear(d, 2d) + Linear(2d, d) = 4d^2 + 3d; a pair per size
    return 2 * (4 * d * d + 3 * d)


def test_create_then_inspect_reports_structure_and_parameter_count(tmp_path, capsys):
    assert main(["create", "style one", "--dir", str(tmp_path), "--seed", "1"]) == 0
    path = tmp_path / "style one.pt"
    assert path.exists()
    capsys.readouterr()
    assert main(["inspect", str(path)]) == 0
    text = capsys.readouterr().out
    expected = sum(four_size_params(d) for d in (768, 320, 640, 1280))
    assert expected == 21_939_840
    assert f"{expected:,}" in text
    assert "768, 320, 640, 1280" in text and "1, 2, 1" in text and "linear" in text
    info = inspect_file(path)
    # file-size arithmetic: fp32 weights plus a small container overhead
    assert expected * 4 < info["bytes_on_disk"] < expected * 4 + 64 * 1024
    assert main(["inspect", "--json", str(path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["parameters"] == expected and data["sizes"] == [768, 320, 640, 1280]
    assert len(data["sha256_short"]) == 10


def test_create_options_mirror_the_webui_form(tmp_path):
    assert main([
        "create", "n@me!", "--dir", str(tmp_path), "--sizes", "1024,320", "--layer-structure", "1, 1.5, 0.5, 1",
        "--activation", "swish", "--layer-norm", "--use-dropout", "--dropout-structure", "0, 0.05, 0.15, 0",
        "--weight-init", "KaimingNormal", "--format", "safetensors",
    ]) == 0
    network = hypernet.load(tmp_path / "nme.safetensors")
    assert network.sizes == [1024, 320]
    assert network.structure.activation == "swish" and network.structure.layer_norm
    assert network.structure.dropout_structure == (0, 0.05, 0.15, 0)


def test_create_refuses_to_overwrite_and_bad_options_are_clear(tmp_path, capsys):
    assert main(["create", "a", "--dir", str(tmp_path)]) == 0
    assert main(["create", "a", "--dir", str(tmp_path)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["create", "b", "--dir", str(tmp_path), "--layer-structure", "2,1"]) == 2
    assert "start and end with 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["create", "c", "--dir", str(tmp_path), "--layer-structure", "1,x,1"])
    assert "item 2 ('x')" in capsys.readouterr().err


def test_convert_and_errors_name_the_file(tmp_path, capsys):
    main(["create", "a", "--dir", str(tmp_path), "--sizes", "64"])
    assert main(["convert", str(tmp_path / "a.pt"), str(tmp_path / "a.safetensors")]) == 0
    a, b = hypernet.load(tmp_path / "a.pt"), hypernet.load(tmp_path / "a.safetensors")
    a_tensors, b_tensors = a.state_dict(), b.state_dict()
    assert list(a_tensors) == list(b_tensors) and a_tensors  # same keys: a missing tensor fails here
    assert all(torch.equal(a_tensors[key], b_tensors[key]) for key in a_tensors)
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 40)
    assert main(["inspect", str(tmp_path / "junk.pt")]) == 2
    err = capsys.readouterr().err
    assert "junk.pt" in err and "Traceback" not in err
