"""Affine hypernetworks folded into the attention weights: the same output as running the
MLPs, no MLP work and no processor, base weights untouched, a compiled UNet that does not
recompile, and every case that must not fold (nonlinear widths, LoRA adapters on,
training) runs the MLPs."""

import copy

import pytest
import torch

from hypernet import attention
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


def test_folding_runs_no_mlp_and_installs_no_processor(unet):
    network = strong(ALL, 1)
    calls = count_mlp_calls(network)
    inputs = unet_inputs()
    processors = dict(unet.attn_processors)
    for _ in range(3):
        with attention.activate(unet, [(network, 1.0)]) as chain:
            assert chain is None
            run(unet, inputs)
    assert set(calls.values()) == {0}
    assert unet.attn_processors == processors  # the very same processor objects
    with attention.activate(unet, [(network, 1.0)], fold=False):
        run(unet, inputs)
    assert all(count > 0 for count in calls.values())


def test_nested_activation_replaces_the_outer_fold(unet):
    a, b = strong(ALL, 1), strong(ALL, 2)
    inputs = unet_inputs()
    only_b = outputs(unet, [(b, 0.5)], inputs, False)
    only_a = outputs(unet, [(a, 1.0)], inputs, False)
    plain = run(unet, inputs)
    with attention.activate(unet, [(a, 1.0)]):
        with attention.activate(unet, [(b, 0.5)]):
            torch.testing.assert_close(run(unet, inputs), only_b, rtol=0, atol=2e-5)
        with attention.activate(unet, [(relu_network(ALL, 3), 0.0)]):
            assert torch.equal(run(unet, inputs), plain)
        torch.testing.assert_close(run(unet, inputs), only_a, rtol=0, atol=2e-5)
    assert torch.equal(run(unet, inputs), plain)


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


def test_the_fold_cache_keeps_one_version_of_a_network(unet):
    """A network trained between previews gets new products; the stale ones are dropped."""
    from hypernet.folding import FoldCache

    network = strong(ALL, 1)
    cache = FoldCache()
    inputs = unet_inputs()
    for _ in range(3):
        with torch.no_grad(), attention.activate(unet, [(network, 1.0)], cache=cache):
            run(unet, inputs)
        with torch.no_grad():
            network.pair(SELF_SIZES[0])[0].linear[0].weight.add_(0.01)
    layers = len([m for m in unet.modules() if hasattr(m, "to_k")])
    assert len(cache._entries) == layers


def test_a_network_in_training_mode_never_folds(unet):
    """Training takes gradients through the MLPs: folding would cut them off."""
    network = strong(ALL, 1).train()
    sample, timestep, context = unet_inputs()
    with torch.enable_grad(), attention.activate(unet, [(network, 1.0)]):
        unet(sample, timestep, context).sample.square().mean().backward()
    for size in ALL:
        gradient = network.pair(size)[0].linear[0].weight.grad
        assert gradient is not None and gradient.abs().sum() > 0


def test_lora_adapters_are_never_bypassed(unet):
    """A PEFT LoRA on to_k/to_v: while it is on, those layers run the MLPs; while it is
    off, the base projection folds."""
    from peft import LoraConfig

    network = strong(ALL, 1)
    inputs = unet_inputs()
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_k", "to_v"], init_lora_weights=False))
    for enabled in (True, False, True):
        unet.enable_adapters() if enabled else unet.disable_adapters()
        exact = outputs(unet, [(network, 1.0)], inputs, False)
        with attention.activate(unet, [(network, 1.0)]) as chain:
            folded = run(unet, inputs)
            assert (chain is not None and not chain.folded) if enabled else (chain is None or chain.folded)
        torch.testing.assert_close(folded, exact, rtol=0, atol=2e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_folded_tensors_match_the_layer_with_the_mlps(dtype):
    """The key offset is dropped (softmax ignores it), the value offset moves into the
    output bias: the attention output is the same."""
    from diffusers.models.attention_processor import Attention

    width = 16
    network = strong([width], 4)
    layer = Attention(width, heads=2, dim_head=8).to(dtype)
    x = torch.randn(1, 6, width).to(dtype)
    with torch.no_grad():
        chain = attention.ActiveChain(networks=((network, 0.8),))
        exact = attention.HypernetworkProcessor(layer.processor, chain)(layer, x).float()
        with attention.activate(layer, [(network, 0.8)]) as chain:
            assert chain is None and layer.to_k.weight.dtype == dtype
            folded = layer(x).float()
    tolerance = 2e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(folded, exact, rtol=tolerance, atol=tolerance)


def test_torch_compile_sees_only_weights_change(unet):
    """Switching among three networks and five multipliers of one structure, a network
    that folds into fewer layers, and no network at all: one graph, no recompilation, no
    graph break, the eager result (folded weights are plain parameters: no type guard)."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    networks = [strong(ALL, seed) for seed in (1, 2, 3)]
    reference = copy.deepcopy(unet)  # the MLP path installs processors: not on the compiled UNet
    compiled = torch.compile(unet, backend="eager")
    inputs = unet_inputs(batch=1)
    for network in networks:
        for multiplier in (1.0, 0.75, 0.5, 0.25, -0.5):
            with torch.no_grad(), attention.activate(unet, [(network, multiplier)]):
                result = compiled(*inputs).sample
            torch.testing.assert_close(result, outputs(reference, [(network, multiplier)], inputs, False), rtol=0, atol=2e-5)
    fewer = strong([TEXT_WIDTH], 4)  # folds into the cross-attention layers only
    with torch.no_grad(), attention.activate(unet, [(fewer, 0.5)]):
        result = compiled(*inputs).sample
    torch.testing.assert_close(result, outputs(reference, [(fewer, 0.5)], inputs, False), rtol=0, atol=2e-5)
    with torch.no_grad():
        torch.testing.assert_close(compiled(*inputs).sample, run(reference, inputs), rtol=0, atol=0)
    assert counters["frames"]["total"] == 1, dict(counters["frames"])
    assert sum(counters["graph_break"].values()) == 0
    torch._dynamo.reset()


def test_affine_of_a_layer_norm_or_relu_network_is_none():
    assert relu_network([8], 1).pair(8)[0].affine() is None
    layer_norm = Hypernetwork.create(sizes=[8], layer_norm=True, generator_seed=1)
    assert layer_norm.pair(8)[0].affine() is None
    dropout = Hypernetwork.create(sizes=[8], layer_structure=(1, 2, 2, 1), dropout_structure=(0, 0.3, 0.3, 0), generator_seed=1)
    assert dropout.pair(8)[0].affine() is not None  # dropout is off in eval
    dropout.train()
    assert dropout.pair(8)[0].affine() is None
