"""What a file's metadata asks for is bounded before any tensor is allocated, and the
messages about it stay short however large the file's values are (issue 14)."""

import json

import pytest
from safetensors.torch import save_file

import hypernet
from hypernet.cli import main
from hypernet.errors import HypernetConfigError, HypernetFileError
from hypernet.formats.torchfile import write_torch_file
from hypernet.formats.webui import network_to_dict
from hypernet.network import MAX_LAYERS, Hypernetwork

MESSAGE_LIMIT = 600  # characters: one line a person reads


def small_dict(**changes):
    data = network_to_dict(Hypernetwork.create(sizes=[8], generator_seed=0))
    data.update(changes)
    return data


def refused(path, *words):
    with pytest.raises(HypernetFileError) as error:
        hypernet.load(path)
    message = str(error.value)
    assert len(message) < MESSAGE_LIMIT, message
    assert str(path) in message and "\n" not in message
    for word in words:
        assert word in message, message
    return message


def test_a_huge_size_key_is_refused_not_a_storage_overflow(tmp_path, capsys):
    data = small_dict()
    data[10**12] = data.pop(8)
    write_torch_file(data, tmp_path / "big.pt")
    refused(tmp_path / "big.pt", "feature size 1000000000000", "65536")
    assert main(["inspect", str(tmp_path / "big.pt")]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_a_size_key_too_long_to_read_as_a_number(tmp_path):
    data = small_dict()
    data["9" * 5000] = data.pop(8)
    write_torch_file(data, tmp_path / "digits.pt")
    refused(tmp_path / "digits.pt", "far too large")


def test_sizes_whose_weights_would_not_fit_are_refused_before_allocating(tmp_path):
    data = small_dict(layer_structure=[1, 1e8, 1], dropout_structure=[0, 0, 0])
    write_torch_file(data, tmp_path / "wide.pt")
    refused(tmp_path / "wide.pt", "parameters", "at most")


def test_a_5000_layer_structure_is_refused_in_a_short_message(tmp_path, capsys):
    write_torch_file(small_dict(layer_structure=[1] * 5000, dropout_structure=[0] * 5000), tmp_path / "deep.pt")
    refused(tmp_path / "deep.pt", "5000 entries", f"at most {MAX_LAYERS}")
    assert main(["inspect", str(tmp_path / "deep.pt")]) == 2
    assert len(capsys.readouterr().err) < MESSAGE_LIMIT


def test_many_missing_keys_are_named_first_few_then_counted(tmp_path):
    layers = [1] * 90  # within the bound, but the file holds only a 1-2-1 module
    message = refused(write_dict(tmp_path, small_dict(layer_structure=layers, dropout_structure=[0] * 90)),
                      "missing", "more", "(90 entries)")
    assert message.count("linear.") < 12


def write_dict(tmp_path, data, name="mismatch.pt"):
    write_torch_file(data, tmp_path / name)
    return tmp_path / name


@pytest.mark.parametrize("value, words", [
    ([1, float("nan"), 1], "finite"),
    ([1, float("inf"), 1], "finite"),
    ([1, 1e308, 1], "parameters"),
    (list(range(5000)), "5000 entries"),
])
def test_odd_layer_structures_are_refused_briefly(tmp_path, value, words):
    path = write_dict(tmp_path, small_dict(layer_structure=value, dropout_structure=[0] * len(value)), "odd.pt")
    refused(path, words)


def test_long_values_in_messages_are_cut(tmp_path):
    path = write_dict(tmp_path, small_dict(activation_func="x" * 100_000), "act.pt")
    refused(path, "activation")
    path = write_dict(tmp_path, small_dict(step=["many"] * 100_000), "step.pt")
    refused(path, "step", "100000 entries")


def test_safetensors_with_a_huge_size_or_a_long_number_in_its_header(tmp_path):
    import torch

    header = {"format": "hypernet", "format_version": "1", "sizes": "[" + "9" * 5000 + "]"}
    save_file({"1000000000000.k.linear.0.weight": torch.zeros(1)}, tmp_path / "a.safetensors", metadata=header)
    refused(tmp_path / "a.safetensors", "not valid JSON")
    header["sizes"] = json.dumps([10**12])
    save_file({"1000000000000.k.linear.0.weight": torch.zeros(1)}, tmp_path / "b.safetensors", metadata=header)
    refused(tmp_path / "b.safetensors", "far too large")


def test_create_is_bounded_the_same_way():
    with pytest.raises(HypernetConfigError, match="larger than 65536"):
        Hypernetwork.create(sizes=[10**12])
    with pytest.raises(HypernetConfigError, match="at most"):
        Hypernetwork.create(sizes=[768], layer_structure=[1] * 5000)
