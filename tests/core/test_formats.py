import collections
import io
import itertools
import os
import pickle
import zipfile

import pytest
import torch
from safetensors.torch import save_file

import hypernet
from hypernet.errors import HypernetFileError
from hypernet.fileio import short_hash
from hypernet.formats import read_optimizer_state, sidecar_path
from hypernet.network import Hypernetwork

from .webui_rules import webui_would_refuse

COMBINATIONS = [
    dict(activation=a, layer_norm=ln, dropout_structure=d, activate_output=ao, weight_init=init, sizes=sizes, layer_structure=ls)
    for a, ln, d, ao, init, sizes, ls in [
        ("linear", False, None, False, "Normal", [768, 320, 640, 1280], [1, 2, 1]),
        ("relu", True, [0, 0.1, 0.2, 0], False, "KaimingNormal", [768], [1, 0.1, 0.1, 1]),
        ("swish", False, None, True, "XavierUniform", [320, 1024], [1, 1.5, 0.5, 1]),
        ("prelu", True, None, False, "XavierNormal", [64], [1, 0.5, 1]),
        ("leakyrelu", False, [0, 0.3, 0], True, "KaimingUniform", [40, 24], [1.0, 2.0, 1.0]),
        ("mish", True, [0, 0.05, 0.15, 0], True, "Normal", [2048], [1, 0.25, 0.5, 1]),
        ("softsign", False, None, False, "Normal", [96], [1, 3, 1]),
        ("gelu", True, None, True, "XavierNormal", [48], [1, 2, 2, 1]),
    ]
]


def make(index: int, **changes) -> Hypernetwork:
    options = {**COMBINATIONS[index], **changes}
    network = Hypernetwork.create(name=f"net{index}", generator_seed=index, **options)
    for parameter in network.parameters():  # make biases and LN non-trivial so round trips are meaningful
        parameter.data.add_(torch.randn_like(parameter) * 0.01)
    network.metadata.step = 1234
    network.metadata.sd_checkpoint = "a1b2c3d4e5"
    network.metadata.sd_checkpoint_name = "v1-5-pruned"
    network.metadata.optional_info = "round trip ✓"
    return network


def same(a: Hypernetwork, b: Hypernetwork) -> None:
    assert a.sizes == b.sizes
    assert a.structure == b.structure
    assert a.metadata == b.metadata
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("index", range(len(COMBINATIONS)))
def test_pt_and_safetensors_round_trips_are_lossless(tmp_path, index):
    network = make(index)
    hypernet.save(network, tmp_path / "a.pt")
    from_pt = hypernet.load(tmp_path / "a.pt")
    same(network, from_pt)
    hypernet.save(from_pt, tmp_path / "b.safetensors")
    from_st = hypernet.load(tmp_path / "b.safetensors")
    same(network, from_st)
    hypernet.save(from_st, tmp_path / "c.pt")
    same(network, hypernet.load(tmp_path / "c.pt"))
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "c.pt").read_bytes()
    x = torch.randn(2, 3, network.sizes[0])
    for got, want in zip(from_st(x), network(x)):
        assert torch.equal(got, want)


def test_written_pt_passes_the_webui_allow_list(tmp_path):
    network = make(1)
    hypernet.save(network, tmp_path / "a.pt")
    assert webui_would_refuse(tmp_path / "a.pt") == []
    names = zipfile.ZipFile(tmp_path / "a.pt").namelist()
    assert not any(n.endswith((".format_version", ".storage_alignment")) for n in names)
    # a plain torch.save file is refused by the same rules (so the check can fail)
    torch.save({"a": torch.zeros(1)}, tmp_path / "plain.pt")
    assert webui_would_refuse(tmp_path / "plain.pt")


def test_written_pt_is_a_plain_webui_dictionary(tmp_path):
    network = make(0)
    hypernet.save(network, tmp_path / "a.pt")
    data = torch.load(tmp_path / "a.pt", weights_only=True, mmap=True)
    assert [k for k in data if isinstance(k, int)] == [768, 320, 640, 1280]
    k_state, v_state = data[768]
    assert isinstance(k_state, collections.OrderedDict) and list(k_state) == [
        "linear.0.weight", "linear.0.bias", "linear.1.weight", "linear.1.bias"
    ]
    assert data["activation_func"] == "linear" and data["activate_output"] is False
    assert data["step"] == 1234 and data["name"] == "net0"


def webui_style_file(path, modules, **metadata):
    torch.save({**modules, **metadata}, path)


def test_old_file_without_metadata_uses_load_defaults(tmp_path):
    reference = Hypernetwork.create(sizes=[32], layer_structure=[1, 0.5, 0.5, 1], activation="relu", activate_output=True,
                                    dropout_structure=[0, 0.3, 0, 0], generator_seed=7)
    k, v = reference.pair(32)
    webui_style_file(tmp_path / "old.pt", {32: (k.state_dict(), v.state_dict())},
                     layer_structure=[1, 0.5, 0.5, 1], activation_func="relu", use_dropout=True, name="oldie")
    loaded = hypernet.load(tmp_path / "old.pt")
    assert loaded.structure.activate_output is True  # missing key means True
    assert loaded.structure.dropout_structure == (0, 0.3, 0, 0)
    assert loaded.name == "oldie"
    x = torch.randn(5, 32)
    assert torch.equal(loaded(x)[0], reference(x)[0])


def test_novelai_legacy_layout(tmp_path):
    d = 24
    states = []
    for seed in (1, 2):
        g = torch.Generator().manual_seed(seed)
        states.append({
            "linear1.weight": torch.randn(2 * d, d, generator=g), "linear1.bias": torch.randn(2 * d, generator=g),
            "linear2.weight": torch.randn(d, 2 * d, generator=g), "linear2.bias": torch.randn(d, generator=g),
        })
    torch.save({d: tuple(states)}, tmp_path / "anime.pt")
    network = hypernet.load(tmp_path / "anime.pt")
    assert network.name == "anime" and network.structure.activation is None
    x = torch.randn(3, d)
    s = states[0]
    expected = x + (x @ s["linear1.weight"].T + s["linear1.bias"]) @ s["linear2.weight"].T + s["linear2.bias"]
    torch.testing.assert_close(network(x)[0], expected)


def test_optimizer_sidecar_honoured_only_when_hash_matches(tmp_path):
    network = make(4)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3)
    network.train()
    network(torch.randn(2, 40))[0].sum().backward()
    optimizer.step()
    hypernet.save(network, tmp_path / "n.pt", optimizer_name="AdamW", optimizer_state=optimizer.state_dict())
    state = read_optimizer_state(tmp_path / "n.pt")
    assert state is not None and state.optimizer_name == "AdamW" and state.hash == short_hash(tmp_path / "n.pt")
    assert webui_would_refuse(sidecar_path(tmp_path / "n.pt")) == []
    network.metadata.step += 1
    hypernet.save(network, tmp_path / "n.pt")  # new weights, old side-car: now stale
    assert read_optimizer_state(tmp_path / "n.pt") is None


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch):
    network = make(3)
    hypernet.save(network, tmp_path / "n.pt")
    before = (tmp_path / "n.pt").read_bytes()
    import hypernet.formats.torchfile as torchfile

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torchfile, "torch_bytes_for_webui", lambda obj: b"PK" + b"x" * 10)
    original_replace = os.replace
    monkeypatch.setattr(os, "replace", explode)
    with pytest.raises(HypernetFileError, match=r"n\.pt: cannot be written \(disk full\)"):
        hypernet.save(network, tmp_path / "n.pt")
    monkeypatch.setattr(os, "replace", original_replace)
    assert (tmp_path / "n.pt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.pt"]


class RunsCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_code_executing_legacy_pickle_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    with open(tmp_path / "evil.pt", "wb") as stream:
        pickle.dump({768: RunsCommand(marker)}, stream, protocol=2)
    with pytest.raises(HypernetFileError) as error:
        hypernet.load(tmp_path / "evil.pt")
    assert "evil.pt" in str(error.value) and "refused" in str(error.value)
    assert not marker.exists()


def test_code_executing_zip_pickle_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"x": torch.zeros(1)}, tmp_path / "good.pt")
    with zipfile.ZipFile(tmp_path / "good.pt") as src, zipfile.ZipFile(tmp_path / "evil.pt", "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("data.pkl"):
                data = pickle.dumps({768: RunsCommand(marker)}, protocol=2)
            dst.writestr(info.filename, data)
    with pytest.raises(HypernetFileError, match="evil.pt.*refused"):
        hypernet.load(tmp_path / "evil.pt")
    assert not marker.exists()


def test_truncated_file_names_the_file(tmp_path):
    hypernet.save(make(0), tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(HypernetFileError, match="cut.pt.*truncated or corrupt"):
        hypernet.load(tmp_path / "cut.pt")
    hypernet.save(make(0), tmp_path / "full.safetensors")
    data = (tmp_path / "full.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 3])
    with pytest.raises(HypernetFileError, match="cut.safetensors"):
        hypernet.load(tmp_path / "cut.safetensors")


def write_dict(tmp_path, name, data):
    torch.save(data, tmp_path / name)
    return tmp_path / name


def good_states(d=16):
    network = Hypernetwork.create(sizes=[d], generator_seed=0)
    k, v = network.pair(d)
    return k.state_dict(), v.state_dict()


@pytest.mark.parametrize(
    "case,data,pattern",
    [
        ("wrong shape", lambda: {16: ({**good_states()[0], "linear.0.weight": torch.zeros(32, 8)}, good_states()[1])}, r"key '16\[0\]\.linear\.0\.weight'.*shape"),
        ("missing module key", lambda: {16: ({"linear.0.weight": torch.zeros(32, 16)}, good_states()[1])}, r"key '16\[0\]'.*missing"),
        ("non-integer size", lambda: {"sixteen": good_states()}, None),
        ("bad size key type", lambda: {16.5: good_states()}, r"key '16.5'.*integer"),
        ("layer structure ends", lambda: {16: good_states(), "layer_structure": [1, 2, 2]}, r"layer_structure.*start and end with 1"),
        ("unknown activation", lambda: {16: good_states(), "activation_func": "sparkle"}, r"activation_func.*unknown activation"),
        ("nan weights", lambda: {16: ({**good_states()[0], "linear.1.bias": torch.full((16,), float("nan"))}, good_states()[1])}, r"16\[0\]\.linear\.1\.bias.*NaN"),
        ("no modules", lambda: {"name": "x"}, r"no hypernetwork modules"),
        ("not a dict", lambda: [1, 2, 3], r"expected a dictionary"),
        ("module not a pair", lambda: {16: torch.zeros(3)}, r"key '16'.*pair"),
    ],
)
def test_malformed_files_raise_the_package_error_naming_file_and_key(tmp_path, case, data, pattern):
    path = write_dict(tmp_path, "bad.pt", data())
    with pytest.raises(HypernetFileError) as error:
        hypernet.load(path)
    message = str(error.value)
    assert "bad.pt" in message
    if pattern:
        import re

        assert re.search(pattern, message), message


def test_unknown_safetensors_and_garbage_are_refused(tmp_path):
    save_file({"lora_unet_down.weight": torch.zeros(2)}, tmp_path / "lora.safetensors")
    with pytest.raises(HypernetFileError, match="not a hypernetwork"):
        hypernet.load(tmp_path / "lora.safetensors")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(HypernetFileError, match="text.pt"):
        hypernet.load(tmp_path / "text.pt")
    with pytest.raises(HypernetFileError, match="no such file"):
        hypernet.load(tmp_path / "missing.pt")


def test_unknown_metadata_keys_survive(tmp_path):
    k, v = good_states()
    torch.save({16: (k, v), "trainer": "third-party", "lr_notes": [1, 2]}, tmp_path / "x.pt")
    network = hypernet.load(tmp_path / "x.pt")
    assert network.metadata.extra == {"trainer": "third-party", "lr_notes": [1, 2]}
    hypernet.save(network, tmp_path / "x.safetensors")
    assert hypernet.load(tmp_path / "x.safetensors").metadata.extra == network.metadata.extra
