"""The denoising loop against diffusers' own pipeline, AND by hand, and different
hypernetwork chains per image of one batch."""

import numpy as np
import pytest
import torch

import hypernet
from hypernet import attention
from hypernet.errors import HypernetError
from hypernet.generation import Generator, ModelInfo, Request
from hypernet.library import Library
from hypernet.network import Hypernetwork
from hypernet.prompt.conditioning import PromptEncoder
from hypernet.samplers import make_scheduler
from hypernet.sampling import Guidance, ImageJob, denoise
from tiny_models import SELF_SIZES, TEXT_WIDTH


@pytest.fixture()
def library(tmp_path):
    root = tmp_path / "hypernetworks"
    hypernet.save(Hypernetwork.create(sizes=[TEXT_WIDTH, *SELF_SIZES], weight_init="XavierNormal", generator_seed=1,
                                      name="linear"), root / "linear.pt")
    hypernet.save(Hypernetwork.create(sizes=[TEXT_WIDTH, *SELF_SIZES], activation="tanh", weight_init="XavierNormal",
                                      generator_seed=2, name="tanh"), root / "tanh.pt")
    return Library(root)


@pytest.fixture()
def generator(pipe, library):
    yield Generator(pipe, library=library, model=ModelInfo(name="tiny", hash="0123456789"))
    attention.uninstall(pipe.unet)


def encode(pipe, text, steps):
    return PromptEncoder(pipe.tokenizer, pipe.text_encoder).conditioning(text, steps)


def noise_for(pipe, seed):
    shape = (pipe.unet.config.in_channels, 32 // pipe.vae_scale_factor, 32 // pipe.vae_scale_factor)
    return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M Karras", "Heun"])
def test_plain_batch_is_bit_identical_to_the_diffusers_pipeline(pipe, sampler):
    steps, seeds = 4, [3, 4]
    encoder = PromptEncoder(pipe.tokenizer, pipe.text_encoder)
    with torch.no_grad():
        cond, uncond, empty = encoder.conditioning("a red circle", steps), encoder.conditioning("", steps), encoder.empty()
    jobs = [ImageJob(noise_for(pipe, seed), torch.Generator("cpu").manual_seed(seed), [(1.0, cond)], uncond)
            for seed in seeds]
    ours, _ = denoise(pipe.unet, make_scheduler(sampler, pipe.scheduler.config), jobs, steps, Guidance(7.0), empty)
    original = pipe.scheduler
    pipe.scheduler = make_scheduler(sampler, original.config)
    try:
        with torch.no_grad():
            stock = pipe(prompt_embeds=torch.stack([cond[0][1]] * 2), negative_prompt_embeds=torch.stack([uncond[0][1]] * 2),
                         num_inference_steps=steps, guidance_scale=7.0, height=32, width=32,
                         latents=torch.stack([job.noise for job in jobs]),
                         generator=[torch.Generator("cpu").manual_seed(seed) for seed in seeds],
                         output_type="latent").images
    finally:
        pipe.scheduler = original
    assert torch.equal(ours, stock)


def test_and_matches_the_composed_prediction_computed_by_hand(pipe):
    steps, seed, scale = 1, 9, 6.0
    a, b, negative = encode(pipe, "a red circle", steps), encode(pipe, "a blue square", steps), encode(pipe, "", steps)
    empty = PromptEncoder(pipe.tokenizer, pipe.text_encoder).empty()
    job = ImageJob(noise_for(pipe, seed), torch.Generator("cpu").manual_seed(seed), [(1.0, a), (0.5, b)], negative)
    ours, _ = denoise(pipe.unet, make_scheduler("Euler", pipe.scheduler.config), [job], steps, Guidance(scale), empty)

    scheduler = make_scheduler("Euler", pipe.scheduler.config)
    scheduler.set_timesteps(steps)
    [timestep] = scheduler.timesteps
    latents = job.noise[None] * scheduler.init_noise_sigma
    with torch.no_grad():
        x = scheduler.scale_model_input(latents, timestep)
        uncond, cond_a, cond_b = (pipe.unet(x, timestep, encoder_hidden_states=c[0][1][None]).sample
                                  for c in (negative, a, b))
    composed = uncond + (cond_a - uncond) * scale + (cond_b - uncond) * (0.5 * scale)
    expected = scheduler.step(composed, timestep, latents).prev_sample
    assert torch.allclose(ours, expected, atol=1e-5)
    plain, _ = denoise(pipe.unet, make_scheduler("Euler", pipe.scheduler.config),
                       [ImageJob(job.noise, job.generator, [(1.0, a)], negative)], steps, Guidance(scale), empty)
    assert (ours - plain).abs().max() > 1e-3  # the second part counts


def test_and_in_a_prompt_is_honoured_without_a_warning(generator):
    request = dict(steps=3, seed=2, sampler="DDIM", width=32, height=32)
    joined = generator.generate(Request("a red circle AND a blue square:0.5", **request), progress=False)[0]
    single = generator.generate(Request("a red circle", **request), progress=False)[0]
    assert not np.array_equal(np.asarray(joined.image), np.asarray(single.image))
    assert not any("AND" in warning for warning in generator.warnings)


def test_four_images_with_four_chains_in_one_batch_equal_the_four_single_runs(generator, pipe):
    prompts = ["a red circle", "a red circle <hypernet:linear:1>", "a blue square <hypernet:tanh:0.8>",
               "a green star <hypernet:linear:0.7> <hypernet:tanh:1>"]
    requests = [Request(prompt, steps=3, seed=10 + index, sampler="Euler a", width=32, height=32)
                for index, prompt in enumerate(prompts)]
    calls = []
    handle = pipe.unet.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    try:
        together = generator.generate_together(requests, progress=False)
    finally:
        handle.remove()
    assert calls == [8, 8, 8]  # one UNet batch per step: 4 images x [uncond, cond]
    for request, [result] in zip(requests, together):
        [alone] = generator.generate(request, progress=False)
        difference = np.abs(np.asarray(result.image).astype(int) - np.asarray(alone.image).astype(int)).max()
        assert difference <= 1, (request.prompt, difference)
        assert result.infotext == alone.infotext
    images = [np.asarray(result.image) for [result] in together]
    assert all(not np.array_equal(images[0], other) for other in images[1:])


def test_requests_that_cannot_share_a_batch_are_refused(generator):
    with pytest.raises(HypernetError, match="use group_requests"):
        generator.generate_together([Request("a", steps=3, width=32, height=32), Request("b", steps=4, width=32, height=32)],
                                    progress=False)
