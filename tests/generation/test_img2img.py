"""img2img, inpainting and the hires fix on the embedded toy model (64x64 pictures)."""

import numpy as np
import pytest
from PIL import Image

from hypernet.cli.defaults import toy_model_loader
from hypernet.errors import HypernetError
from hypernet.infotext import read_png_infotext
from hypernet.latents import decode, encode
from hypernet.loading import load_generator
from hypernet.outputs import request_from_infotext, save_results
from hypernet.request import HiresFix, Img2Img, Request
from hypernet.samplers import SAMPLERS

PROMPT = "a red circle on a blue background"
OTHER = "a green square on a white background"


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    return load_generator(None, hypernet_dir=tmp_path_factory.mktemp("none"), default_model=toy_model_loader(),
                          progress=False)


@pytest.fixture(scope="module")
def init(generator):
    return generator.generate(Request(PROMPT, seed=1, steps=12), progress=False)[0].image


def pixels(image):
    return np.asarray(image).astype(np.int16)


def run(generator, prompt=OTHER, **settings):
    steps = settings.pop("steps", 12)
    return generator.generate(Request(prompt, seed=5, steps=steps, img2img=Img2Img(**settings)), progress=False)[0]


def test_denoise_zero_gives_the_picture_back_within_the_vae_round_trip(generator, init):
    round_trip = decode(generator.pipe, encode(generator.pipe, [init]))[0]
    result = run(generator, image=init, denoising_strength=0.0)
    assert np.array_equal(pixels(result.image), pixels(round_trip))
    assert np.abs(pixels(result.image) - pixels(init)).mean() < 6  # the VAE's round trip, nothing more
    assert result.parameters["Denoising strength"] == 0.0


def test_denoise_one_behaves_like_txt2img(generator, init):
    txt2img = generator.generate(Request(OTHER, seed=5, steps=12), progress=False)[0].image
    result = run(generator, image=init, denoising_strength=1.0).image
    to_txt2img = np.abs(pixels(result) - pixels(txt2img)).mean()
    to_init = np.abs(pixels(result) - pixels(init)).mean()
    assert to_txt2img < 0.25 * to_init, (to_txt2img, to_init)
    half = run(generator, image=init, denoising_strength=0.5).image  # in between: the picture shows through
    assert np.abs(pixels(half) - pixels(init)).mean() < to_init


def test_inpainting_changes_only_the_masked_region(generator, init):
    mask = Image.new("L", init.size, 0)
    mask.paste(255, (0, 0, 32, 64))  # the left half
    result = pixels(run(generator, image=init, denoising_strength=0.9, mask=mask, mask_blur=0).image)
    before = pixels(init)
    assert np.array_equal(result[:, 32:], before[:, 32:])  # the init picture laid over outside the mask
    assert np.abs(result[:, :32] - before[:, :32]).mean() > 20
    inverted = pixels(run(generator, image=init, denoising_strength=0.9, mask=mask, mask_blur=0, invert_mask=True).image)
    assert np.array_equal(inverted[:, :32], before[:, :32])
    assert np.abs(inverted[:, 32:] - before[:, 32:]).mean() > 20


@pytest.mark.parametrize("content", ["fill", "latent noise", "latent nothing"])
def test_masked_content_modes_keep_the_unmasked_area(generator, init, content):
    mask = Image.new("L", init.size, 0)
    mask.paste(255, (16, 16, 48, 48))
    result = run(generator, image=init, denoising_strength=0.8, mask=mask, mask_blur=0, masked_content=content)
    outside = np.ones((64, 64), bool)
    outside[16:48, 16:48] = False
    assert np.array_equal(pixels(result.image)[outside], pixels(init)[outside])
    assert result.parameters["Masked content"] == content


def test_only_masked_works_on_the_crop_and_pastes_it_back(generator, init):
    big = init.resize((128, 128))
    mask = Image.new("L", big.size, 0)
    mask.paste(255, (80, 80, 112, 112))
    result = run(generator, image=big, denoising_strength=0.9, mask=mask, mask_blur=0, only_masked=True,
                 only_masked_padding=8)
    assert result.image.size == (128, 128)  # the original's size, not the 64x64 worked on
    outside = np.ones((128, 128), bool)
    outside[80:112, 80:112] = False
    assert np.array_equal(pixels(result.image)[outside], pixels(big)[outside])
    assert np.abs(pixels(result.image)[80:112, 80:112] - pixels(big)[80:112, 80:112]).mean() > 10
    assert result.parameters["Inpaint area"] == "Only masked"


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_img2img_works_with_every_sampler(generator, init, sampler):
    result = generator.generate(Request(OTHER, seed=5, steps=4, sampler=sampler,
                                img2img=Img2Img(init, denoising_strength=0.5)), progress=False)[0]
    values = pixels(result.image)
    assert values.std() > 5  # a real picture, not a flat (black) one
    assert np.abs(values - pixels(init)).mean() > 1  # and it was denoised


def test_hires_fix_reaches_the_target_size_and_reproduces_from_its_png(generator, tmp_path):
    request = Request(PROMPT + " <hypernet:water:0.5>", seed=3, steps=6,
                      hires=HiresFix(scale=1.5, steps=4, denoising_strength=0.6, upscaler="Latent (bicubic)",
                                     prompt=PROMPT + " <hypernet:neon:1>"))
    [result] = generator.generate(request, progress=False)
    assert result.image.size == (96, 96)
    assert result.parameters["Size"] == "64x64"  # the first pass's size, as the webui writes it
    [path] = save_results([result], tmp_path)
    text = read_png_infotext(path)
    assert "Hires upscale: 1.5" in text and "Hires steps: 4" in text and "Hires prompt:" in text
    again = generator.generate(request_from_infotext(text), progress=False)[0]
    assert np.array_equal(pixels(again.image), pixels(result.image))
    # the hires prompt's tags apply to the second pass: without them the picture differs
    plain = generator.generate(Request(PROMPT + " <hypernet:water:0.5>", seed=3, steps=6,
                                       hires=HiresFix(scale=1.5, steps=4, denoising_strength=0.6,
                                                      upscaler="Latent (bicubic)")), progress=False)[0]
    assert not np.array_equal(pixels(plain.image), pixels(result.image))


@pytest.mark.parametrize("upscaler", ["Latent", "Lanczos", "Nearest"])
def test_hires_upscalers_and_target_sizes(generator, upscaler):
    request = Request(PROMPT, seed=3, steps=3, hires=HiresFix(upscaler=upscaler, resize_width=128, resize_height=96,
                                                             steps=2))
    [result] = generator.generate(request, progress=False)
    assert result.image.size == (128, 96)
    assert pixels(result.image).std() > 5


def test_bad_img2img_and_hires_settings_are_named(generator, init):
    with pytest.raises(HypernetError, match="denoising strength"):
        run(generator, image=init, denoising_strength=1.5)
    with pytest.raises(HypernetError, match="resize mode"):
        run(generator, image=init, resize_mode="stretch")
    with pytest.raises(HypernetError, match="hires upscaler 'ESRGAN'"):
        generator.generate(Request(PROMPT, hires=HiresFix(upscaler="ESRGAN")), progress=False)
    for scale in (float("nan"), float("inf")):  # no target size to compute: an error, not a crash
        with pytest.raises(HypernetError, match="hires scale must be at least 1"):
            generator.generate(Request(PROMPT, hires=HiresFix(scale=scale)), progress=False)
    with pytest.raises(HypernetError, match="mask blur"):
        run(generator, image=init, mask=init.convert("L"), mask_blur=(2, -1))
    with pytest.raises(HypernetError, match="mask is empty"):
        run(generator, image=init, mask=Image.new("L", init.size, 0), only_masked=True)
