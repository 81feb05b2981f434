import hashlib

import pytest
import torch

from hypernet import attention
from hypernet.network import Hypernetwork

from tiny_models import SELF_SIZES, TEXT_WIDTH, tiny_unet


def unet_inputs(batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    sample = torch.randn(batch, 4, 16, 16, generator=g)
    context = torch.randn(batch, 77, TEXT_WIDTH, generator=g)
    return sample, torch.tensor(500), context


def run(unet, inputs):
    with torch.no_grad():
        return unet(*inputs).sample


def weights_digest(module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def strong(sizes, seed):
    return Hypernetwork.create(sizes=sizes, weight_init="XavierNormal", generator_seed=seed)


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


def test_installed_with_nothing_active_or_multiplier_zero_is_bit_identical(unet):
    inputs = unet_inputs()
    stock = run(unet, inputs)
    attention.install(unet)
    try:
        assert torch.equal(run(unet, inputs), stock)
        network = strong([TEXT_WIDTH, *SELF_SIZES], 1)
        with attention.activate(unet, [(network, 0.0)]):
            assert torch.equal(run(unet, inputs), stock)
        with attention.activate(unet, [(network, 1.0)]):
            assert not torch.equal(run(unet, inputs), stock)
        assert torch.equal(run(unet, inputs), stock)  # restored on exit
    finally:
        attention.uninstall(unet)
    assert not any(isinstance(p, attention.HypernetworkProcessor) for p in unet.attn_processors.values())
    assert torch.equal(run(unet, inputs), stock)


def test_processor_is_not_a_module_and_state_dict_unchanged(unet):
    keys = set(unet.state_dict())
    attention.install(unet)
    try:
        assert set(unet.state_dict()) == keys
        assert all(not isinstance(p, torch.nn.Module) for p in unet.attn_processors.values())
    finally:
        attention.uninstall(unet)


def record_layers(unet, networks, inputs):
    """Per attention layer, in one run: the tensor it feeds to k/v (its kv input) and what
    its to_k / to_v actually received."""
    seen = {}
    handles = []
    for name, module in unet.named_modules():
        if name.endswith((".attn1", ".attn2")):
            def pre(module, args, kwargs, name=name):
                context = kwargs.get("encoder_hidden_states")
                hidden = args[0] if args else kwargs["hidden_states"]
                seen.setdefault(name, {})["kv_in"] = (hidden if context is None else context).clone()
            handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
            for side in ("to_k", "to_v"):
                def hook(m, args, out, name=name, side=side):
                    seen.setdefault(name, {})[side] = args[0].clone()
                handles.append(getattr(module, side).register_forward_hook(hook))
    try:
        with attention.activate(unet, networks, fold=False):  # the MLP path: inputs of to_k/to_v change
            run(unet, inputs)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def expected_inputs(networks, x):
    k = v = x
    for network, multiplier in networks:
        pair = network.pair(k.shape[-1])
        if pair is not None:
            k, v = pair[0](k, multiplier), pair[1](v, multiplier)
    return k, v


@pytest.mark.parametrize("size,expected", [(TEXT_WIDTH, "attn2"), (SELF_SIZES[0], "attn1@32"), (SELF_SIZES[1], "attn1@64")])
def test_each_size_reaches_only_its_layers(unet, size, expected):
    layers = record_layers(unet, [(strong([size], 2), 1.0)], unet_inputs())
    assert len(layers) == 14  # 7 transformer blocks (down 2, mid 1, up 4), attn1 + attn2 each
    changed = set()
    for name, seen in layers.items():
        if not torch.equal(seen["to_k"], seen["kv_in"]):
            changed.add(name)
        width = seen["kv_in"].shape[-1]
        should_change = name.endswith("attn2") if expected == "attn2" else (name.endswith("attn1") and width == int(expected.split("@")[1]))
        assert (name in changed) == should_change, (name, width)
        assert torch.equal(seen["to_k"], seen["kv_in"]) == torch.equal(seen["to_v"], seen["kv_in"])
    assert changed


def test_chain_matches_contract_order(unet):
    inputs = unet_inputs()
    a = strong([TEXT_WIDTH, *SELF_SIZES], 3)
    b = Hypernetwork.create(sizes=[TEXT_WIDTH, SELF_SIZES[0]], activation="tanh", weight_init="XavierNormal", generator_seed=4)
    chain = [(a, 0.8), (b, 0.5)]
    for name, seen in record_layers(unet, chain, inputs).items():
        k, v = expected_inputs(chain, seen["kv_in"])
        assert torch.equal(seen["to_k"], k) and torch.equal(seen["to_v"], v), name
    ab = run_with(unet, chain, inputs)
    ba = run_with(unet, chain[::-1], inputs)
    assert not torch.equal(ab, ba)


def run_with(unet, networks, inputs):
    with attention.activate(unet, networks):
        return run(unet, inputs)


def test_swapping_networks_never_changes_base_weights(unet):
    before = weights_digest(unet)
    inputs = unet_inputs()
    for seed, multiplier in [(5, 1.0), (6, 0.3), (5, -1.0)]:
        run_with(unet, [(strong([TEXT_WIDTH, *SELF_SIZES], seed), multiplier)], inputs)
    assert weights_digest(unet) == before


def test_context_hypernetwork_computed_once_per_activation(unet, monkeypatch):
    network = strong([TEXT_WIDTH], 7)
    calls = []
    module = network.pair(TEXT_WIDTH)[0]
    original = module.forward
    monkeypatch.setattr(module, "forward", lambda x, m=1.0: (calls.append(x.shape), original(x, m))[1])
    inputs = unet_inputs()
    with attention.activate(unet, [network], fold=False):
        first = run(unet, inputs)
        run(unet, inputs)  # a second "step" with the same context
    assert len(calls) == 1
    calls.clear()
    uncached = None
    with attention.activate(unet, [network], fold=False) as chain:
        chain.cache_context = False
        uncached = run(unet, inputs)
    assert len(calls) == 7  # one per cross-attention layer
    assert torch.equal(first, uncached)


@pytest.mark.parametrize("layer_norm", [False, True])
def test_gradients_reach_the_hypernetwork_only(layer_norm):
    unet = tiny_unet()  # its own: requires_grad is changed here
    network = Hypernetwork.create(sizes=[TEXT_WIDTH, *SELF_SIZES], weight_init="XavierNormal", generator_seed=8,
                                  layer_norm=layer_norm)
    network.train()
    network.requires_grad_(True)
    sample, t, context = unet_inputs(batch=1)
    unet.requires_grad_(False)
    with attention.activate(unet, [network]):
        loss = unet(sample, t, context).sample.pow(2).mean()
    loss.backward()
    assert any(isinstance(m, torch.nn.LayerNorm) for m in network.modules()) == layer_norm
    missing = [name for name, p in network.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    assert all(p.grad is None for p in unet.parameters())


def test_works_alongside_peft_lora(unet):
    from peft import LoraConfig

    inputs = unet_inputs()
    base = run(unet, inputs)
    network = strong([TEXT_WIDTH, *SELF_SIZES], 9)
    hn_only = run_with(unet, [network], inputs)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_k", "to_v", "to_q", "to_out.0"], init_lora_weights=False), adapter_name="test")
    try:
        lora_only = run(unet, inputs)
        both = run_with(unet, [network], inputs)
        assert not torch.equal(lora_only, base)
        assert not torch.equal(both, lora_only) and not torch.equal(both, hn_only)
        with attention.activate(unet, [(network, 0.0)]):
            assert torch.equal(run(unet, inputs), lora_only)
    finally:
        unet.delete_adapters("test")
    assert torch.equal(run(unet, inputs), base)
