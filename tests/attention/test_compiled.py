"""The MLP path under torch.compile: one graph, no break, no recompilation across networks
and multipliers of one structure, the eager result; the slots it reads equal the chain;
the fold buffers a warm cache reuses stay correct under nesting."""

import copy

import pytest
import torch

from hypernet import attention
from hypernet.compiled import Slots
from hypernet.folding import FoldCache
from hypernet.network import Hypernetwork, apply_chain

from tiny_models import SELF_SIZES, TEXT_WIDTH, tiny_unet

from .test_processor import run, strong, unet_inputs, weights_digest

ALL = [*SELF_SIZES, TEXT_WIDTH]


def relu_network(seed, sizes=ALL, **options):
    return Hypernetwork.create(sizes=sizes, activation="relu", weight_init="XavierNormal", generator_seed=seed, **options)


@pytest.fixture()
def unet():
    return tiny_unet()


def test_compiled_unet_with_mlp_networks_compiles_once(unet):
    """Three relu networks × five multipliers: one frame, no graph break, the eager output."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    reference = copy.deepcopy(unet)
    compiled = torch.compile(unet, backend="eager")
    inputs = unet_inputs(batch=2)
    plain = run(reference, inputs)
    for network in (relu_network(seed) for seed in (1, 2, 3)):
        for multiplier in (1.0, 0.75, 0.5, 0.25, -0.5):
            with torch.no_grad(), attention.activate(unet, [(network, multiplier)]) as chain:
                assert isinstance(next(iter(unet.attn_processors.values())), attention.StandardProcessor)
                result = compiled(*inputs).sample
            with attention.activate(reference, [(network, multiplier)]):
                expected = run(reference, inputs)
            assert (expected - plain).abs().max() > 1e-3  # the network does change the output
            torch.testing.assert_close(result, expected, rtol=0, atol=2e-5)
    assert not chain.slots.active and chain.networks == ()  # restored on exit
    # two frames, each compiled once: the UNet's forward (one graph) and the pre-hook that
    # starts a call's text-context memo (`Slots.begin_call`, no graph)
    assert counters["frames"]["total"] == 2 and counters["stats"]["unique_graphs"] == 1, dict(counters["frames"])
    assert sum(counters["graph_break"].values()) == 0, dict(counters["graph_break"])
    # processors stay installed; folded networks then change weights only: at most one
    # recompilation (MLPs -> folded), none per network or multiplier
    for network in (strong(ALL, 4), strong(ALL, 5)):
        for multiplier in (1.0, 0.5, -0.5):
            with torch.no_grad(), attention.activate(unet, [(network, multiplier)]):
                result = compiled(*inputs).sample
            with attention.activate(reference, [(network, multiplier)], fold=False):
                torch.testing.assert_close(result, run(reference, inputs), rtol=0, atol=2e-5)
    assert counters["frames"]["total"] <= 3, dict(counters["frames"])
    assert sum(counters["graph_break"].values()) == 0, dict(counters["graph_break"])
    torch._dynamo.reset()


@pytest.mark.parametrize("options", [{}, {"layer_norm": True}, {"layer_structure": (1, 1.5, 2, 1)}])
def test_slots_compute_the_chain(options):
    first, second = relu_network(1, **options), strong(ALL, 2)
    slots = Slots()
    x = torch.randn(2, 5, SELF_SIZES[1])
    for chain in ([(first, 0.7), (second, -0.4)], [(relu_network(3, **options), 1.3), (strong(ALL, 4), 0.2)]):
        slots.load(chain)
        for got, expected in zip(slots.key_value_inputs(x), apply_chain(chain, x)):
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
        if chain[0][0] is first:
            layout = slots.by_width
    assert slots.by_width is layout  # same structure: the same objects, new data (no recompilation)
    slots.load([(second, 1.0)])
    assert slots.by_width is not layout
    slots.load([(first.train(), 1.0)])
    assert not slots.active  # training needs the original networks' gradients


def test_eager_standard_path_equals_the_key_value_view(unet):
    """No grad: `compiled.attention_2_0`; grad on: the base with the key/value view."""
    inputs = unet_inputs()
    chain = [(relu_network(1), 0.8), (strong(ALL, 2), 0.5)]
    with attention.activate(unet, chain, fold=False):
        direct = run(unet, inputs)
        with torch.enable_grad():
            view = unet(*inputs).sample.detach()
    torch.testing.assert_close(direct, view, rtol=0, atol=1e-6)


def test_nested_activation_gives_the_outer_chain_its_slots_back(unet):
    outer, inner = relu_network(1), relu_network(2)
    x = torch.randn(1, 4, TEXT_WIDTH)
    with attention.activate(unet, [(outer, 0.6)]) as chain:
        with attention.activate(unet, [(inner, 1.0)]):
            torch.testing.assert_close(chain.slots.key_value_inputs(x)[0], apply_chain([(inner, 1.0)], x)[0])
        torch.testing.assert_close(chain.slots.key_value_inputs(x)[0], apply_chain([(outer, 0.6)], x)[0])
    assert not chain.slots.active


def test_a_warm_cache_reuses_fold_buffers_and_nesting_stays_correct(unet):
    a, b = strong(ALL, 1), strong(ALL, 2)
    cache = FoldCache()
    inputs = unet_inputs()
    before = weights_digest(unet)
    plain = run(unet, inputs)
    expected = {key: run_folded(unet, chain, inputs, None) for key, chain in
                {"a": [(a, 1.0)], "b": [(b, 0.5)], "a-": [(a, -0.3)]}.items()}
    layer = cache.attention_modules(unet)[0]
    pointers = set()
    for key, chain in (("a", [(a, 1.0)]), ("b", [(b, 0.5)]), ("a-", [(a, -0.3)]), ("a", [(a, 1.0)])):
        with attention.activate(unet, chain, cache=cache):
            pointers.add(layer.to_k.weight.data_ptr())
            torch.testing.assert_close(run(unet, inputs), expected[key], rtol=0, atol=0)
    assert len(pointers) == cache.sets  # two buffer sets, rewritten in place
    with attention.activate(unet, [(a, 1.0)], cache=cache):
        with attention.activate(unet, [(b, 0.5)], cache=cache):
            torch.testing.assert_close(run(unet, inputs), expected["b"], rtol=0, atol=0)
            with attention.activate(unet, [(a, -0.3)], cache=cache):
                torch.testing.assert_close(run(unet, inputs), expected["a-"], rtol=0, atol=0)
            torch.testing.assert_close(run(unet, inputs), expected["b"], rtol=0, atol=0)
        torch.testing.assert_close(run(unet, inputs), expected["a"], rtol=0, atol=0)
    assert torch.equal(run(unet, inputs), plain)
    assert weights_digest(unet) == before


def run_folded(unet, chain, inputs, cache):
    with attention.activate(unet, chain, cache=cache):
        return run(unet, inputs)


def test_activating_through_the_compiled_wrapper_installs_once(unet):
    """`pipe.unet = torch.compile(pipe.unet)`: the generator then activates the wrapper."""
    compiled = torch.compile(unet, backend="eager")
    cache = FoldCache()
    with attention.activate(compiled, [(relu_network(1), 1.0)], cache=cache) as first:
        assert attention.installed_chain(compiled, cache) is first is attention.installed_chain(unet)
    with attention.activate(compiled, [(relu_network(2), 1.0)], cache=cache) as second:
        assert second is first


def _linear_count(graphs) -> int:
    return sum(node.op == "call_function" and "linear" in str(node.target) for gm in graphs for node in gm.graph.nodes)


def test_a_traced_call_computes_the_text_context_once_per_width(unet):
    """Every cross-attention layer gets the same context tensor; a compiled graph does not
    merge repeated products of one input, so the slots memo it per UNet call: the MLPs on
    the context appear once in the graph, not once per cross-attention layer. `uninstall`
    takes the memo's pre-hook off again."""
    def recording(graphs):
        def backend(gm, example_inputs):
            graphs.append(gm)
            return gm.forward
        return backend

    cross = [m for m in unet.modules() if hasattr(m, "to_k") and m.to_k.in_features == TEXT_WIDTH]
    assert len(cross) >= 2 and TEXT_WIDTH not in SELF_SIZES
    network = relu_network(1, sizes=[TEXT_WIDTH])  # 1-2-1: two linears per module, key and value
    inputs = unet_inputs(batch=2)
    plain, traced = [], []
    torch._dynamo.reset()
    with torch.no_grad():
        torch.compile(unet, backend=recording(plain))(*inputs)
    torch._dynamo.reset()
    with torch.no_grad(), attention.activate(unet, [(network, 0.8)]):
        result = torch.compile(unet, backend=recording(traced))(*inputs).sample
        expected = run(unet, inputs)  # eager: the original networks, the context cached per activation
    torch._dynamo.reset()
    torch.testing.assert_close(result, expected, rtol=0, atol=2e-5)
    assert _linear_count(traced) - _linear_count(plain) == 4, (_linear_count(traced), _linear_count(plain), len(cross))
    attention.uninstall(unet)
    assert not unet._forward_pre_hooks


def test_going_back_to_a_recent_network_and_multiplier_writes_nothing(unet):
    """A buffer set remembers what it holds: alternating two (network, multiplier) pairs
    writes no folded weight after the first time; a third pair rewrites the least recently
    used set; a set changed while swapped in, or a base weight changed, is written again."""
    a, b = strong(ALL, 1), strong(ALL, 2)
    cache = FoldCache()
    inputs = unet_inputs()
    expected = {key: run_folded(unet, chain, inputs, None) for key, chain in
                {"a": [(a, 1.0)], "b": [(b, 0.5)], "b2": [(b, 0.25)]}.items()}
    layer = cache.attention_modules(unet)[0]

    def activation(key, chain):
        with attention.activate(unet, chain, cache=cache):
            weight = layer.to_k.weight
            torch.testing.assert_close(run(unet, inputs), expected[key], rtol=0, atol=0)
            return weight.data_ptr(), weight._version

    first = {key: activation(key, chain) for key, chain in (("a", [(a, 1.0)]), ("b", [(b, 0.5)]))}
    for _ in range(2):
        assert activation("a", [(a, 1.0)]) == first["a"] and activation("b", [(b, 0.5)]) == first["b"]
    pointer, version = activation("b2", [(b, 0.25)])
    assert pointer == first["a"][0] and version > first["a"][1]  # the older set (a's), rewritten
    assert activation("b", [(b, 0.5)]) == first["b"]
    with attention.activate(unet, [(b, 0.5)], cache=cache):
        with torch.no_grad():
            layer.to_k.weight.mul_(2)  # someone writes into a folded weight: not trusted again
    assert activation("b", [(b, 0.5)])[1] > first["b"][1]
    base = layer.to_k.weight
    with torch.no_grad():
        base.add_(0.01)  # the base changed: a new product, a new fold
    expected["b"] = run_folded(unet, [(b, 0.5)], inputs, None)
    activation("b", [(b, 0.5)])
