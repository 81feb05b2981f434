"""The hook-in beside other extensions: an IP-Adapter (random weights, built here) keeps
its keyword arguments, its scale, its registered weights; uninstall gives back the very
processors it found."""

import types

import pytest
import torch

from hypernet import attention
from hypernet.network import Hypernetwork

from tiny_models import SELF_SIZES, TEXT_WIDTH, tiny_unet

IMAGE_EMBED_WIDTH = 16
IMAGE_TOKENS = 4


def add_ip_adapter(unet, seed=0):
    """What diffusers' `load_ip_adapter` builds, with random weights: an image projection
    and an `IPAdapterAttnProcessor2_0` (an nn.Module) on every cross-attention layer."""
    from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0
    from diffusers.models.embeddings import ImageProjection, MultiIPAdapterImageProjection

    processors = {}
    for name, processor in unet.attn_processors.items():
        if name.endswith("attn2.processor"):
            layer = unet.get_submodule(name.removesuffix(".processor"))
            processor = IPAdapterAttnProcessor2_0(layer.to_k.out_features, TEXT_WIDTH, num_tokens=(IMAGE_TOKENS,))
        processors[name] = processor
    unet.set_attn_processor(processors)
    unet.encoder_hid_proj = MultiIPAdapterImageProjection(
        [ImageProjection(IMAGE_EMBED_WIDTH, TEXT_WIDTH, num_image_text_embeds=IMAGE_TOKENS)]
    )
    unet.register_to_config(encoder_hid_dim_type="ip_image_proj")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, tensor in unet.state_dict(keep_vars=True).items():
            if "to_k_ip" in key or "to_v_ip" in key or key.startswith("encoder_hid_proj"):
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.3)
    return unet


def set_ip_adapter_scale(unet, scale):
    """diffusers' own `pipe.set_ip_adapter_scale` (it finds the processors by isinstance)."""
    from diffusers.loaders import IPAdapterMixin

    IPAdapterMixin.set_ip_adapter_scale(types.SimpleNamespace(unet=unet), scale)


@pytest.fixture(scope="module")
def unet():
    return add_ip_adapter(tiny_unet())


def run(unet, masks=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    sample = torch.randn(1, 4, 16, 16, generator=g)
    context = torch.randn(1, 77, TEXT_WIDTH, generator=g)
    image = torch.randn(1, 1, IMAGE_EMBED_WIDTH, generator=g)
    kwargs = {"ip_adapter_masks": masks} if masks is not None else None
    with torch.no_grad():
        return unet(sample, 500, context, added_cond_kwargs={"image_embeds": [image]},
                    cross_attention_kwargs=kwargs).sample


def network(seed=1):
    return Hypernetwork.create(sizes=[TEXT_WIDTH, *SELF_SIZES], weight_init="XavierNormal", generator_seed=seed)


def left_half_mask():
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., :8] = 1.0
    return [mask]


def test_ip_adapter_output_unchanged_at_zero_and_its_scale_still_counts(unet):
    set_ip_adapter_scale(unet, 1.0)
    adapter_only = run(unet)
    set_ip_adapter_scale(unet, 0.0)
    without_adapter = run(unet)
    set_ip_adapter_scale(unet, 1.0)
    assert not torch.allclose(adapter_only, without_adapter)  # the adapter does something here
    hypernetwork = network()
    try:
        with attention.activate(unet, [(hypernetwork, 0.0)]):
            assert torch.equal(run(unet), adapter_only)
        with attention.activate(unet, [(hypernetwork, 1.0)]):
            full = run(unet)
            assert not torch.allclose(full, adapter_only)  # the hypernetwork does something too
            set_ip_adapter_scale(unet, 0.0)  # found by diffusers while the wrappers are installed
            assert not torch.allclose(run(unet), full)
    finally:
        set_ip_adapter_scale(unet, 1.0)
        attention.uninstall(unet)


def test_cross_attention_kwargs_reach_the_wrapped_processor(unet):
    masks = left_half_mask()
    masked = run(unet, masks)
    assert not torch.allclose(masked, run(unet))  # the mask changes the output
    try:
        with attention.activate(unet, [(network(), 0.0)]):
            assert torch.equal(run(unet, masks), masked)  # not dropped by Attention.forward
    finally:
        attention.uninstall(unet)


def test_wrapper_exposes_the_base_signature_and_class(unet):
    from diffusers.models.attention_processor import AttnProcessor2_0, IPAdapterAttnProcessor2_0
    import inspect

    attention.install(unet)
    try:
        processors = unet.attn_processors
        for name, processor in processors.items():
            assert isinstance(processor, attention.HypernetworkProcessor)
            expected = IPAdapterAttnProcessor2_0 if name.endswith("attn2.processor") else AttnProcessor2_0
            assert isinstance(processor, expected)
            assert inspect.signature(processor.__call__) == inspect.signature(processor.base.__call__)
            assert isinstance(processor, torch.nn.Module) == isinstance(processor.base, torch.nn.Module)
    finally:
        attention.uninstall(unet)


def test_state_dict_keys_the_same_before_while_installed_and_after(unet):
    before = unet.state_dict()
    assert any("to_k_ip" in key for key in before)
    attention.install(unet)
    try:
        during = unet.state_dict()
        assert list(during) == list(before)
        assert all(during[key] is before[key] or torch.equal(during[key], before[key]) for key in before)
    finally:
        attention.uninstall(unet)
    assert list(unet.state_dict()) == list(before)


def test_adapter_weights_move_with_the_unet_while_installed(unet):
    attention.install(unet)
    try:
        unet.to(torch.float64)
        assert all(p.dtype == torch.float64 for p in unet.parameters())
        bases = [p.base for p in unet.attn_processors.values() if isinstance(p.base, torch.nn.Module)]
        assert bases and all(p.dtype == torch.float64 for base in bases for p in base.parameters())
    finally:
        unet.to(torch.float32)
        attention.uninstall(unet)


def test_uninstall_gives_back_the_same_processor_objects(unet):
    original = dict(unet.attn_processors)
    attention.install(unet)
    attention.uninstall(unet)
    assert all(unet.attn_processors[name] is processor for name, processor in original.items())


@pytest.mark.parametrize("duplicate", ["deepcopy", "pickle"])
def test_an_installed_unet_copies_whole(unet, duplicate):
    """A deep copy (an EMA, a second pipeline) or a pickle of an installed UNet gets its own
    wrappers, bound to its own chain, with the adapter's weights under the same keys."""
    import copy
    import pickle

    reference = run(unet)
    attention.install(unet)
    try:
        twin = copy.deepcopy(unet) if duplicate == "deepcopy" else pickle.loads(pickle.dumps(unet))
    finally:
        attention.uninstall(unet)
    chain = attention.installed_chain(twin)
    assert chain is not None and all(p.chain is chain and p.__call__.__self__ is p for p in twin.attn_processors.values())
    with attention.activate(twin, [(network(), 0.0)]):
        assert torch.equal(run(twin), reference)
    attention.uninstall(twin)
    assert list(twin.state_dict()) == list(unet.state_dict())
