"""The text context's hypernetwork output computed once per UNet call gives the same loss
and gradients as computing it in every cross-attention layer."""

import torch

from hypernet import attention
from hypernet.training import loss as loss_module
from hypernet.training.sharing import SharedContextNetwork, can_share

from .conftest import new_network


def loss_and_gradients(pipe, chain_network, network, context, shared):
    schedule = loss_module.noise_schedule(pipe.scheduler.config)
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, 8, 8, generator=generator)
    noise = torch.randn(2, 4, 8, 8, generator=generator)
    network.zero_grad(set_to_none=True)
    with attention.activate(pipe.unet, [(chain_network, 1.0)]):
        if shared:
            chain_network.begin(context)
        loss = loss_module.diffusion_loss(pipe.unet, schedule, latents, noise, torch.tensor([100, 800]), context)
        loss.backward()
        if shared:
            chain_network.forget()
    return loss.item(), {name: p.grad.clone() for name, p in network.named_parameters()}


def test_shared_context_output_gives_the_same_loss_and_gradients(pipe):
    flags = [(p, p.requires_grad) for p in pipe.unet.parameters()]
    pipe.unet.requires_grad_(False)
    try:
        network = new_network(seed=1).train()
        network.requires_grad_(True)
        context = torch.randn(2, 77, 48, generator=torch.Generator().manual_seed(1))
        plain_loss, plain = loss_and_gradients(pipe, network, network, context, shared=False)
        calls = []
        hook = network.pair(48)[0].register_forward_hook(lambda *args: calls.append(1))
        shared_loss, shared = loss_and_gradients(pipe, SharedContextNetwork(network), network, context, shared=True)
        hook.remove()
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)
    assert len(calls) == 1  # once for the whole UNet call, not once per cross-attention layer
    assert abs(plain_loss - shared_loss) < 1e-6
    for name, gradient in plain.items():
        assert torch.allclose(gradient, shared[name], atol=1e-6, rtol=1e-5), name
    assert any(g.abs().sum() > 0 for g in shared.values())


def test_not_used_with_dropout_or_checkpointing():
    assert can_share(new_network(), checkpointing=False)
    assert not can_share(new_network(), checkpointing=True)
    assert not can_share(new_network(dropout_structure=[0, 0.1, 0]), checkpointing=False)
