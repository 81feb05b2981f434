import itertools

import pytest
import torch
from torch import nn

import hypernet
from hypernet.errors import HypernetConfigError
from hypernet.network import ACTIVATIONS, WEIGHT_INITS, Hypernetwork, Structure, derive_dropout_structure

BUILDABLE = sorted(a for a in ACTIVATIONS if a not in ("threshold", "multiheadattention"))
# glu halves the width and breaks the next Linear, as in the webui; softmax-family works on 3-D input
FORWARD_OK = [a for a in BUILDABLE if a != "glu"]


def kinds(sequential):
    return [type(m).__name__ for m in sequential]


def test_sequence_matches_contract_examples():
    relu_ln = Structure((1, 0.1, 0.1, 1), "relu", True, (0, 0.1, 0.2, 0), False)
    assert kinds(relu_ln.build_layers(768)) == [
        "Linear", "ReLU", "LayerNorm", "Dropout", "Linear", "ReLU", "LayerNorm", "Dropout", "Linear", "LayerNorm",
    ]
    assert relu_ln.widths(768) == [768, 76, 76, 768]  # int() truncation
    swish = Structure((1, 1.5, 0.5, 1), "swish", False, (0, 0, 0, 0), False)
    assert kinds(swish.build_layers(320)) == ["Linear", "Hardswish", "Linear", "Hardswish", "Linear"]
    old = Structure((1, 0.1, 0.1, 1), "relu", False, tuple(derive_dropout_structure((1, 0.1, 0.1, 1), True, False)), True)
    assert kinds(old.build_layers(768)) == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Linear", "ReLU"]
    prelu = Structure((1, 0.1, 1), "prelu", True, (0, 0, 0), False)
    layers = prelu.build_layers(768)
    assert kinds(layers) == ["Linear", "PReLU", "LayerNorm", "Linear", "LayerNorm"]
    assert layers[1].weight.shape == (1,)


@pytest.mark.parametrize(
    "structure,use,last,expected",
    [
        ([1, 2, 1], True, False, [0, 0, 0]),
        ([1, 2, 1], True, True, [0, 0.3, 0]),
        ([1, 2, 2, 1], True, False, [0, 0.3, 0, 0]),
        ([1, 2, 4, 2, 1], True, True, [0, 0.3, 0.3, 0.3, 0]),
        ([1, 2, 1], False, True, [0, 0, 0]),
    ],
)
def test_derived_dropout_structure(structure, use, last, expected):
    assert derive_dropout_structure(structure, use, last) == pytest.approx(expected)


def test_swish_is_hardswish_and_all_torch_activations_listed():
    assert ACTIVATIONS["swish"] is nn.Hardswish
    for name in ("prelu", "mish", "gelu", "silu", "softsign", "celu", "rrelu", "tanhshrink"):
        assert name in ACTIVATIONS


@pytest.mark.parametrize("activation", FORWARD_OK)
def test_every_activation_builds_and_runs(activation):
    network = Hypernetwork.create(sizes=[32], layer_structure=[1, 2, 1], activation=activation, layer_norm=True)
    k, v = network(torch.randn(2, 5, 32))
    assert k.shape == v.shape == (2, 5, 32)


def test_unbuildable_and_unknown_activations_are_clear_errors():
    with pytest.raises(HypernetConfigError, match="threshold"):
        Hypernetwork.create(sizes=[8], activation="threshold")
    with pytest.raises(HypernetConfigError, match="valid names"):
        Hypernetwork.create(sizes=[8], activation="sparkle")


@pytest.mark.parametrize("bad", [[2, 2, 1], [1, 2, 2], [1], []])
def test_layer_structure_must_start_and_end_with_one(bad):
    with pytest.raises(HypernetConfigError, match="layer_structure"):
        Hypernetwork.create(sizes=[8], layer_structure=bad)


@pytest.mark.parametrize("init", list(WEIGHT_INITS))
def test_inits_zero_biases_and_layernorm_drawn_small(init):
    network = Hypernetwork.create(sizes=[64], layer_structure=[1, 2, 1], activation="relu", weight_init=init, layer_norm=True)
    for module in network.modules():
        if isinstance(module, (nn.Linear, nn.LayerNorm)):
            assert torch.count_nonzero(module.bias) == 0
        if isinstance(module, nn.LayerNorm):
            assert module.weight.abs().max() < 0.1  # N(0, 0.01), not ones
    if init == "Normal":
        first = network.pair(64)[0].linear[0].weight
        assert 0.005 < first.std().item() < 0.02


@pytest.mark.parametrize("layers", [[1, 2, 1], [1, 1.5, 2, 1]])
def test_zero_last_starts_as_the_identity_with_a_gradient_on_the_last_layer(layers):
    network = Hypernetwork.create(sizes=[16], layer_structure=layers, weight_init="ZeroLast", generator_seed=0)
    module = network.pair(16)[0]
    linears = [layer for layer in module.modules() if isinstance(layer, nn.Linear)]
    assert torch.count_nonzero(linears[-1].weight) == 0 and all(torch.count_nonzero(l.weight) > 0 for l in linears[:-1])
    x = torch.randn(3, 16)
    assert torch.equal(module(x, 1.0), x)  # exactly the base model at any multiplier
    network.train()
    (module(x) * torch.randn(3, 16)).sum().backward()
    assert linears[-1].weight.grad.abs().sum() > 0  # no saddle: the last layer learns from step 1


def test_multiplier_zero_is_bit_exact_and_train_mode_ignores_multiplier():
    network = Hypernetwork.create(sizes=[16], activation="relu", weight_init="XavierNormal", generator_seed=1)
    x = torch.randn(3, 7, 16)
    x[0, 0, 0] = -0.0
    network.multiplier = 0.0
    k, v = network(x)
    assert torch.equal(k, x) and torch.equal(v, x)
    assert torch.equal(torch.signbit(k), torch.signbit(x))
    network.train()
    k_train, _ = network(x)
    network.multiplier = 1.0
    network.eval()
    k_one, _ = network(x)
    assert torch.equal(k_train, k_one)
    assert not torch.equal(k_one, x)


def test_multiplier_scales_the_residual():
    network = Hypernetwork.create(sizes=[16], weight_init="XavierNormal", generator_seed=2)
    x = torch.randn(4, 16)
    full, _ = network(x, multiplier=1.0)
    half, _ = network(x, multiplier=0.5)
    torch.testing.assert_close(half - x, (full - x) * 0.5)


def test_missing_size_passes_through_and_chain_order():
    a = Hypernetwork.create(sizes=[16, 8], weight_init="XavierNormal", generator_seed=3)
    b = Hypernetwork.create(sizes=[16], activation="tanh", weight_init="XavierNormal", generator_seed=4)
    a.multiplier, b.multiplier = 0.7, 1.3
    y = torch.randn(2, 4, 12)
    assert all(torch.equal(t, y) for t in hypernet.apply_chain([a, b], y))
    x = torch.randn(2, 4, 16)
    k, v = hypernet.apply_chain([a, b], x)
    k_expected = b.pair(16)[0](a.pair(16)[0](x, 0.7), 1.3)
    v_expected = b.pair(16)[1](a.pair(16)[1](x, 0.7), 1.3)
    assert torch.equal(k, k_expected) and torch.equal(v, v_expected)
    k_ab, _ = hypernet.apply_chain([a, b], x)
    k_ba, _ = hypernet.apply_chain([b, a], x)
    assert not torch.equal(k_ab, k_ba)
    # explicit multipliers override the networks' own
    k_pairs, _ = hypernet.apply_chain([(a, 0.0), (b, 0.0)], x)
    assert torch.equal(k_pairs, x)


def test_fp16_input_runs_in_fp32_and_returns_input_dtype():
    network = Hypernetwork.create(sizes=[16], weight_init="XavierNormal", generator_seed=5)
    x = torch.randn(2, 16)
    k16, _ = network(x.half())
    assert k16.dtype == torch.float16
    k32, _ = network(x.half().float())
    torch.testing.assert_close(k16.float(), k32, atol=2e-3, rtol=2e-3)


def test_create_validates_sizes():
    with pytest.raises(HypernetConfigError):
        Hypernetwork.create(sizes=[])
    with pytest.raises(HypernetConfigError):
        Hypernetwork.create(sizes=[768, 768])
