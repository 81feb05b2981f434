"""Several txt2img requests as one UNet batch (`Generator.generate_together`): each
image with its own prompt, seed and hypernetwork chain."""

from __future__ import annotations

import torch

from .errors import HypernetError
from .latents import decode
from .request import Request, batch_key


def generate_together(generator, requests, progress: bool, control) -> list:
    """Each request's results, in order (see `Generator.generate_together`). A friend of
    `Generator`: it runs the generator's own passes over jobs from several requests."""
    if not requests:
        return []
    multiple = max(8, generator.pipe.vae_scale_factor)
    requests = [request.validated(generator.native_size, multiple) for request in requests]
    keys = {batch_key(request) for request in requests}
    if len(keys) > 1:
        raise HypernetError("requests run together must share size, steps, CFG scale, sampler, schedule and "
                            f"LoRA-free settings; got {len(keys)} different sets (use group_requests)")
    for request in requests:
        if request.batch_count != 1 or request.img2img is not None or request.hires is not None:
            raise HypernetError("requests run together are txt2img with batch count 1, without img2img or hires")
    prompted = [generator._prompted(request.prompt, request.negative_prompt) for request in requests]
    if any(p.loras for p in prompted):
        raise HypernetError("<lora:...> tags apply to the whole pipeline: run such requests on their own")
    first = requests[0]
    merged = Request(**{**first.__dict__, "batch_size": sum(r.batch_size for r in requests)})
    generator.check_memory(merged)
    jobs, seeds = [], []
    shape = generator._latent_shape(first.width, first.height)
    for request, read in zip(requests, prompted):
        own = [request.seed + i for i in range(request.batch_size)]
        jobs += generator._jobs(request, read, own, generator._noise(request, own, shape), first.steps)
        seeds += own
    noise = torch.stack([job.noise for job in jobs])
    with generator._running:
        latents, done, complete = generator._pass(first, prompted[0], seeds, noise, first.steps, first.cfg_scale,
                                                  first.sampler, first.schedule, None, None, progress, "together",
                                                  control, 0, jobs=jobs)
        images = iter(decode(generator.pipe, latents))
    results = []
    for request, read in zip(requests, prompted):
        results.append([generator._result(next(images), request.seed + i, request, read.labels, i,
                                          request.steps if complete else done) for i in range(request.batch_size)])
    return results
