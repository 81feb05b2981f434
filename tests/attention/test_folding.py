"""Affine hypernetworks folded into to_k/to_v: the same output as running the MLPs, no
MLP work per step in self-attention, base weights untouched, and every case that must
not fold (nonlinear widths, LoRA adapters on, gradients on) runs the MLPs."""

import pytest
import torch

from hypernet import attention
from hypernet.folding import Folds
from hypernet.network import Hypernetwork

from tiny_models import SELF_SIZES, TEXT_WIDTH, tiny_unet

from .test_processor import run, strong, unet_inputs, weights_digest

ALL = [*SELF_SIZES, TEXT_WIDTH]


@pytest.fixture()
def unet():
    return tiny_unet()


def outputs(unet, chain, inputs, fold):
    with attention.activate(unet, chain, fold=fold):
        return run(unet, inputs)


def relu_network(sizes, seed):
    return Hypernetwork.create(sizes=sizes, activation="relu", weight_init="XavierNormal", generator_seed=seed)


@pytest.mark.parametrize("case", ["one", "half", "two", "mixed", "negative"])
def test_folded_equals_the_mlps(unet, case):
    a, b = strong(ALL, 1), strong(SELF_SIZES, 2)
    chain = {
        "one": [(a, 1.0)],
        "half": [(a, 0.5)],
        "two": [(a, 0.7), (b, 0.4)],
        "mixed": [(relu_network([SELF_SIZES[0]], 3), 1.0), (a, 1.0)],  # width 32 runs the MLPs, 64 folds
        "negative": [(b, -0.6)],
    }[case]
    inputs = unet_inputs()
    plain = run(unet, inputs)
    exact = outputs(unet, chain, inputs, fold=False)
    folded = outputs(unet, chain, inputs, fold=True)
    assert (exact - plain).abs().max() > 1e-2  # the networks do change the output
    torch.testing.assert_close(folded, exact, rtol=0, atol=2e-5)


def count_mlp_calls(network) -> dict:
    calls = {size: 0 for size in network.sizes}
    for size in network.sizes:
        for module in network.pair(size):
            module.register_forward_hook(lambda *_, size=size: calls.__setitem__(size, calls[size] + 1))
    return calls


def test_folding_skips_the_self_attention_mlps(unet):
    network = strong(ALL, 1)
    calls = count_mlp_calls(network)
    inputs = unet_inputs()
    for _ in range(3):  # three "steps" of one activation
        with attention.activate(unet, [(network, 1.0)]):
            run(unet, inputs)
    assert calls[SELF_SIZES[0]] == calls[SELF_SIZES[1]] == 0
    assert calls[TEXT_WIDTH] > 0  # the text context still goes through its (cached) MLPs
    with attention.activate(unet, [(network, 1.0)], fold=False):
        run(unet, inputs)
    assert calls[SELF_SIZES[0]] > 0 and calls[SELF_SIZES[1]] > 0


def test_zero_multiplier_is_bit_identical_and_base_weights_untouched(unet):
    network = strong(ALL, 1)
    inputs = unet_inputs()
    before = weights_digest(unet)
    plain = run(unet, inputs)
    for multiplier in (1.0, 0.3, 0.0):
        result = outputs(unet, [(network, multiplier)], inputs, fold=True)
    assert torch.equal(result, plain)
    assert weights_digest(unet) == before


def test_multiplier_switch_matches_each_multiplier(unet):
    network = strong(ALL, 1)
    inputs = unet_inputs()
    for multiplier in (1.0, 0.25, -0.5, 1.0):
        torch.testing.assert_close(outputs(unet, [(network, multiplier)], inputs, True),
                                   outputs(unet, [(network, multiplier)], inputs, False), rtol=0, atol=2e-5)


def test_a_network_changed_in_place_is_folded_again(unet):
    network = strong(ALL, 1)
    inputs = unet_inputs()
    outputs(unet, [(network, 1.0)], inputs, True)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.mul_(2.0)
    torch.testing.assert_close(outputs(unet, [(network, 1.0)], inputs, True),
                               outputs(unet, [(network, 1.0)], inputs, False), rtol=0, atol=5e-5)


def test_gradients_on_never_fold(unet):
    """Training takes gradients through the MLPs: folding would cut them off."""
    network = strong(ALL, 1)
    sample, timestep, context = unet_inputs()
    with torch.enable_grad(), attention.activate(unet, [(network, 1.0)]):
        unet(sample, timestep, context).sample.square().mean().backward()
    for size in SELF_SIZES:
        gradient = network.pair(size)[0].linear[0].weight.grad
        assert gradient is not None and gradient.abs().sum() > 0


def test_lora_adapters_are_never_bypassed(unet):
    """A PEFT LoRA on to_k/to_v: while it is on, the MLPs run (a fold made without it must
    not be reused); while it is off, the base projection folds again."""
    from peft import LoraConfig

    network = strong(ALL, 1)
    inputs = unet_inputs()
    outputs(unet, [(network, 1.0)], inputs, True)  # a fold made before the adapter exists
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_k", "to_v"], init_lora_weights=False))
    for enabled in (True, False, True):
        unet.enable_adapters() if enabled else unet.disable_adapters()
        exact = outputs(unet, [(network, 1.0)], inputs, False)
        torch.testing.assert_close(outputs(unet, [(network, 1.0)], inputs, True), exact, rtol=0, atol=2e-5)


class FakeAttention(torch.nn.Module):
    def __init__(self, width, dtype):
        super().__init__()
        self.to_k = torch.nn.Linear(width, 2 * width, bias=False, dtype=dtype)
        self.to_v = torch.nn.Linear(width, 2 * width, bias=True, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_folded_weights_match_the_composition_in_the_projection_dtype(dtype):
    width = 16
    network = strong([width], 4)
    layer = FakeAttention(width, dtype)
    x = torch.randn(5, width)
    with torch.no_grad():
        weight_k, bias_k, weight_v, bias_v = Folds().weights(layer, [(network, 0.8)])
        assert weight_k.dtype == dtype and bias_k.dtype == dtype
        key_input, value_input = network(x, 0.8)
        expected_k = key_input @ layer.to_k.weight.float().T
        expected_v = value_input @ layer.to_v.weight.float().T + layer.to_v.bias.float()
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(x @ weight_k.float().T + bias_k.float(), expected_k, rtol=tolerance, atol=tolerance)
    torch.testing.assert_close(x @ weight_v.float().T + bias_v.float(), expected_v, rtol=tolerance, atol=tolerance)


def test_affine_of_a_layer_norm_or_relu_network_is_none():
    assert relu_network([8], 1).pair(8)[0].affine() is None
    layer_norm = Hypernetwork.create(sizes=[8], layer_norm=True, generator_seed=1)
    assert layer_norm.pair(8)[0].affine() is None
    dropout = Hypernetwork.create(sizes=[8], layer_structure=(1, 2, 2, 1), dropout_structure=(0, 0.3, 0.3, 0), generator_seed=1)
    assert dropout.pair(8)[0].affine() is not None  # dropout is off in eval
    dropout.train()
    assert dropout.pair(8)[0].affine() is None
