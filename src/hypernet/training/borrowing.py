"""The pipeline a run borrows: frozen for the run, handed back as it came."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def borrowed(pipe):
    """Freeze the base model for the block and restore everything it touched afterwards."""
    components = [c for c in (pipe.unet, pipe.vae, pipe.text_encoder, getattr(pipe, "text_encoder_2", None))
                  if c is not None]
    grads = [(p, p.requires_grad) for c in components for p in c.parameters()]
    modes = [(m, m.training) for c in components for m in c.modules()]
    devices = [(c, next(c.parameters()).device) for c in components]
    checkpointing = getattr(pipe.unet, "is_gradient_checkpointing", False)
    scheduler = pipe.scheduler
    processors = dict(pipe.unet.attn_processors)  # training installs the hypernetwork hook-in
    try:
        for component in components:
            component.requires_grad_(False)
            component.eval()
        yield
    finally:
        for parameter, flag in grads:
            parameter.requires_grad_(flag)
        for module, flag in modes:
            module.training = flag
        for component, device in devices:
            if next(component.parameters()).device != device:
                component.to(device)
        if getattr(pipe.unet, "is_gradient_checkpointing", False) != checkpointing:
            (pipe.unet.enable_gradient_checkpointing if checkpointing else pipe.unet.disable_gradient_checkpointing)()
        pipe.scheduler = scheduler
        if any(pipe.unet.attn_processors[name] is not processor for name, processor in processors.items()):
            pipe.unet.set_attn_processor(dict(processors))
