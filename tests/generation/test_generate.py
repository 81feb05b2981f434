import hashlib

import numpy as np
import pytest
import torch

import hypernet
from hypernet import attention
from hypernet.errors import HypernetError
from hypernet.generation import Generator, ModelInfo, Request
from hypernet.outputs import request_from_infotext, save_results
from hypernet.infotext import read_png_infotext
from hypernet.library import Library
from hypernet.network import Hypernetwork
from tiny_models import SELF_SIZES, TEXT_WIDTH

SIZE = 32  # 32x32 px -> 8x8 latents with the tiny VAE (scale factor 2)... computed from the pipe below


@pytest.fixture()
def library(tmp_path):
    root = tmp_path / "hypernetworks"
    hypernet.save(Hypernetwork.create(sizes=[TEXT_WIDTH, *SELF_SIZES], weight_init="XavierNormal", generator_seed=1, name="strong"), root / "strong.pt")
    hypernet.save(Hypernetwork.create(sizes=[TEXT_WIDTH], activation="tanh", weight_init="XavierNormal", generator_seed=2, name="other"), root / "sub" / "other.safetensors")
    return Library(root)


@pytest.fixture()
def generator(pipe, library):
    yield Generator(pipe, library=library, model=ModelInfo(name="tiny", hash="0123456789"))
    attention.uninstall(pipe.unet)


def pixels(result):
    return np.asarray(result.image)


def request(prompt, **changes):
    values = dict(prompt=prompt, steps=3, seed=42, sampler="DDIM", width=32, height=32)
    values.update(changes)
    return Request(**values)


def plain_latents(pipe, prompt, seed, steps=3):
    generator = torch.Generator("cpu").manual_seed(seed)
    shape = (pipe.unet.config.in_channels, 32 // pipe.vae_scale_factor, 32 // pipe.vae_scale_factor)
    latents = torch.randn(shape, generator=generator)[None]
    return pipe(prompt=[prompt], negative_prompt=[""], num_inference_steps=steps, guidance_scale=7.0, height=32, width=32,
                latents=latents.clone(), output_type="latent").images


def test_no_network_and_multiplier_zero_bit_identical_to_plain_diffusers(pipe):
    from diffusers import DDIMScheduler

    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    stock = plain_latents(pipe, "a red circle", 7)
    network = Hypernetwork.create(sizes=[TEXT_WIDTH, *SELF_SIZES], weight_init="XavierNormal", generator_seed=3)
    attention.install(pipe.unet)
    try:
        assert torch.equal(plain_latents(pipe, "a red circle", 7), stock)
        with attention.activate(pipe.unet, [(network, 0.0)]):
            assert torch.equal(plain_latents(pipe, "a red circle", 7), stock)
        with attention.activate(pipe.unet, [(network, 1.0)]):
            assert not torch.equal(plain_latents(pipe, "a red circle", 7), stock)
    finally:
        attention.uninstall(pipe.unet)


def test_tags_select_networks_and_are_removed_from_the_encoded_text(generator):
    base = generator.generate(request("a red circle"), progress=False)[0]
    zero = generator.generate(request("a red circle <hypernet:strong:0>"), progress=False)[0]
    assert np.array_equal(pixels(base), pixels(zero))  # tag text removed, multiplier 0 = off
    styled = generator.generate(request("a red circle <hypernet:strong:1>"), progress=False)[0]
    assert not np.array_equal(pixels(base), pixels(styled))
    assert styled.networks == [("strong", 1.0)]
    assert "<hypernet:strong:1>" in styled.infotext.splitlines()[0]
    both = generator.generate(request("a red circle <hypernet:strong:0.5> <hypernet:sub/other:0.8>"), progress=False)[0]
    assert both.networks == [("strong", 0.5), ("sub/other", 0.8)]


def test_unknown_network_name_is_an_error_with_suggestions(generator):
    with pytest.raises(HypernetError, match="strong"):
        generator.generate(request("a cat <hypernet:strnog:1>"), progress=False)


def test_same_seed_same_image_and_batch_seeds_follow_the_webui(generator):
    a = generator.generate(request("a blue square", seed=5), progress=False)[0]
    b = generator.generate(request("a blue square", seed=5), progress=False)[0]
    assert np.array_equal(pixels(a), pixels(b))
    batch = generator.generate(request("a blue square", seed=5, batch_size=2, batch_count=2), progress=False)
    assert [r.seed for r in batch] == [5, 6, 7, 8]
    single6 = generator.generate(request("a blue square", seed=6), progress=False)[0]
    assert np.abs(pixels(batch[1]).astype(int) - pixels(single6).astype(int)).max() <= 1


def test_infotext_round_trip_reproduces_the_image(generator, tmp_path):
    first = generator.generate(request("a green star <hypernet:strong:0.7>", negative_prompt="blurry, (ugly:1.2)",
                                       seed=1234, sampler="Euler a", cfg_scale=6.5), progress=False)
    [path] = save_results(first, tmp_path)
    assert path.name == "00000-1234.png"
    text = read_png_infotext(path)
    assert pixels(first[0]).std() > 0  # a real picture (non-finite latents come out black)
    assert "Steps: 3" in text and "Sampler: Euler a" in text and "Seed: 1234" in text and "Model hash: 0123456789" in text
    again = generator.generate(request_from_infotext(text), progress=False)
    assert np.array_equal(pixels(first[0]), pixels(again[0]))
    [second_path] = save_results(again, tmp_path)
    assert second_path.name == "00001-1234.png"


def test_bad_requests_are_clear_errors(generator):
    with pytest.raises(HypernetError, match="multiple of"):
        generator.generate(request("x", width=30), progress=False)
    with pytest.raises(HypernetError, match="unknown sampler"):
        generator.generate(request("x", sampler="Euler z"), progress=False)


@pytest.mark.parametrize("sampler", ["Euler a", "Euler", "DPM++ 2M Karras", "DPM++ SDE Karras", "DDIM", "LMS", "Heun", "DPM2", "UniPC", "PLMS", "DPM++ 2M SDE"])
def test_webui_sampler_names_generate(generator, pipe, sampler):
    decoded = []  # the latents the sampler hands the VAE (a PNG's uint8 pixels are always finite)
    handle = pipe.vae.post_quant_conv.register_forward_pre_hook(lambda module, args: decoded.append(args[0].clone()))
    try:
        result = generator.generate(request("a red circle", sampler=sampler), progress=False)[0]
    finally:
        handle.remove()
    assert result.parameters["Sampler"] in sampler
    assert len(decoded) == 1 and torch.isfinite(decoded[0]).all() and decoded[0].std() > 0
    assert pixels(result).std() > 0


def test_prompt_editing_switches_conditioning_at_the_scheduled_step(generator, pipe):
    seen = []
    handle = pipe.unet.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["encoder_hidden_states"][-1].clone()), with_kwargs=True)
    try:
        generator.generate(request("a [cat:dog:2] sitting", steps=4, sampler="DDIM"), progress=False)
    finally:
        handle.remove()
    encoder = generator.prompt_encoder
    with torch.no_grad():
        cat = encoder.encode("a cat sitting")[0]
        dog = encoder.encode("a dog sitting")[0]
    assert len(seen) == 4
    which = ["cat" if torch.allclose(s, cat, atol=1e-5) else "dog" if torch.allclose(s, dog, atol=1e-5) else "?" for s in seen]
    from hypernet.prompt import schedule

    expected = []
    for step in range(4):
        until = next(u for u, _ in schedule("a [cat:dog:2] sitting", 4) if step <= u)
        expected.append("cat" if "cat" in dict(schedule("a [cat:dog:2] sitting", 4))[until] else "dog")
    assert which == expected and which.count("dog") >= 1 and which[0] == "cat"


def test_long_prompts_are_chunked_not_truncated(generator, pipe):
    seen = []
    handle = pipe.unet.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["encoder_hidden_states"].shape[1]), with_kwargs=True)
    long_prompt = ", ".join(["red circle"] * 60)  # ~180 tokens
    try:
        generator.generate(request(long_prompt, steps=1), progress=False)
    finally:
        handle.remove()
    assert seen == [3 * 77]
