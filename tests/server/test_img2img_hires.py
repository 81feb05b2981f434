"""img2img, inpainting and the hires fix over HTTP, against a live server on the toy model:
pixels checked, not just statuses."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest

from .live import decode_png, info_of, txt2img_body

API = "/sdapi/v1"


def png_base64(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.fixture(scope="module")
def picture(live):
    """A generated 64x64 picture (base64 PNG) to start img2img from."""
    with live.client() as client:
        answer = client.post(f"{API}/txt2img", json=txt2img_body("a red circle on a blue background", seed=11))
    assert answer.status_code == 200, answer.text
    return answer.json()["images"][0]


def left_half_mask(width: int = 64, height: int = 64):
    from PIL import Image

    mask = Image.new("L", (width, height), 0)
    mask.paste(255, (0, 0, width // 2, height))
    return mask


def test_img2img_at_denoising_0_is_the_vae_round_trip(http, live, picture):
    from hypernet.latents import decode, encode

    answer = http.post(f"{API}/img2img", json=txt2img_body(init_images=["data:image/png;base64," + picture],
                                                            denoising_strength=0))
    assert answer.status_code == 200, answer.text
    result = decode_png(answer.json()["images"][0])
    assert result.size == (64, 64)
    pipe = live.service._generator.pipe
    import torch

    with torch.no_grad():
        round_trip = decode(pipe, encode(pipe, [decode_png(picture).convert("RGB")]))[0]
    assert np.abs(pixels(result) - pixels(round_trip)).max() <= 1
    info = info_of(answer)
    assert "Denoising strength: 0" in info["infotexts"][0] and info["denoising_strength"] == 0
    assert answer.json()["parameters"]["init_images"] is None  # not sent back, as the webui
    # and a real denoise changes the picture: the check above can fail
    changed = http.post(f"{API}/img2img", json=txt2img_body(init_images=[picture], denoising_strength=0.9))
    assert np.abs(pixels(decode_png(changed.json()["images"][0])) - pixels(round_trip)).mean() > 2


def test_inpainting_keeps_unmasked_pixels(http, picture):
    body = txt2img_body("a green square", init_images=[picture], mask=png_base64(left_half_mask()),
                        denoising_strength=1.0, mask_blur=0, inpainting_fill=1, inpaint_full_res=False, seed=4)
    answer = http.post(f"{API}/img2img", json=body)
    assert answer.status_code == 200, answer.text
    result, source = pixels(decode_png(answer.json()["images"][0])), pixels(decode_png(picture))
    assert (result[:, 32:] == source[:, 32:]).all()  # not masked: the init picture's own pixels
    assert np.abs(result[:, :24] - source[:, :24]).mean() > 2  # masked: repainted
    text = info_of(answer)["infotexts"][0]
    assert "Mask blur: 0" in text and "Masked content: original" in text and "Denoising strength: 1.0" in text


def test_inpainting_only_masked_with_inverted_mask_and_fill(http, picture):
    body = txt2img_body(init_images=[picture], mask=png_base64(left_half_mask()), denoising_strength=0.8,
                        mask_blur=0, inpainting_fill=0, inpaint_full_res=True, inpaint_full_res_padding=4,
                        inpainting_mask_invert=1, seed=4)
    answer = http.post(f"{API}/img2img", json=body)
    assert answer.status_code == 200, answer.text
    result, source = pixels(decode_png(answer.json()["images"][0])), pixels(decode_png(picture))
    assert (result[:, :32] == source[:, :32]).all()  # inverted: the painted half is kept
    assert np.abs(result[:, 36:] - source[:, 36:]).mean() > 2
    text = info_of(answer)["infotexts"][0]
    assert "Mask mode: Inpaint not masked" in text and "Inpaint area: Only masked" in text
    assert "Masked content: fill" in text


def test_img2img_batch_and_several_init_images(http, picture):
    body = txt2img_body(init_images=[picture, picture], denoising_strength=0.5, batch_size=2, seed=20)
    answer = http.post(f"{API}/img2img", json=body)
    assert answer.status_code == 200, answer.text
    info = info_of(answer)
    assert info["all_seeds"] == [20, 21] and len(answer.json()["images"]) == 2
    assert any("only the first is used" in warning for warning in info["warnings"])


def test_txt2img_hires_fix(http, live):
    body = txt2img_body(enable_hr=True, hr_scale=2, hr_upscaler="Latent (bicubic)", hr_second_pass_steps=2,
                        denoising_strength=0.6, hr_prompt="a red circle, sharp", hr_cfg=5)
    answer = http.post(f"{API}/txt2img", json=body)
    assert answer.status_code == 200, answer.text
    image = decode_png(answer.json()["images"][0])
    assert image.size == (128, 128)
    info = info_of(answer)
    text = info["infotexts"][0]
    for field in ("Size: 64x64", "Hires upscale: 2", "Hires upscaler: Latent (bicubic)", "Hires steps: 2",
                  "Denoising strength: 0.6", 'Hires prompt: "a red circle, sharp"', "Hires CFG Scale: 5"):
        assert field in text, text
    assert info["denoising_strength"] == 0.6 and info["warnings"] == []
    read = http.post(f"{API}/png-info", json={"image": answer.json()["images"][0]}).json()
    assert read["parameters"]["Hires upscale"] == 2 and read["parameters"]["Hires upscaler"] == "Latent (bicubic)"
    assert read["parameters"]["Hires steps"] == 2 and read["parameters"]["Denoising strength"] == 0.6
    assert read["parameters"]["Hires prompt"] == "a red circle, sharp" and read["parameters"]["Hires CFG Scale"] == 5


def test_txt2img_hires_resize_and_pixel_upscaler(http):
    body = txt2img_body(enable_hr=True, hr_resize_x=96, hr_resize_y=80, hr_upscaler="Lanczos",
                        hr_sampler_name="DPM++ 2M", hr_scheduler="karras")
    answer = http.post(f"{API}/txt2img", json=body)
    assert answer.status_code == 200, answer.text
    assert decode_png(answer.json()["images"][0]).size == (96, 80)
    text = info_of(answer)["infotexts"][0]
    assert "Hires resize: 96x80" in text and "Hires upscaler: Lanczos" in text
    assert "Hires sampler: DPM++ 2M" in text and "Hires schedule type: Karras" in text


def test_upscaler_listings_are_what_hr_upscaler_accepts(http):
    from hypernet.request import LATENT_UPSCALERS, PIXEL_UPSCALERS

    upscalers = http.get(f"{API}/upscalers").json()
    assert [entry["name"] for entry in upscalers] == list(PIXEL_UPSCALERS)
    assert all(set(entry) == {"name", "model_name", "model_path", "model_url", "scale"} for entry in upscalers)
    assert [entry["name"] for entry in http.get(f"{API}/latent-upscale-modes").json()] == list(LATENT_UPSCALERS)


def refused(answer, *words):
    assert answer.status_code == 422, (answer.status_code, answer.text)
    message = answer.json()["detail"]
    for word in words:
        assert word in message, message
    assert "Traceback" not in answer.text


@pytest.mark.parametrize("fields, words", [
    ({"init_images": []}, ["init_images"]),
    ({"init_images": ["%%% not base64 %%%"]}, ["init_images[0]"]),
    ({"init_images": [base64.b64encode(b"not a picture").decode()]}, ["init_images[0]", "not a readable image"]),
    ({"denoising_strength": 1.5}, ["denoising_strength", "between 0 and 1"]),
    ({"denoising_strength": -0.1}, ["denoising_strength"]),
    ({"resize_mode": 3}, ["resize_mode 3", "latent upscale", "not supported"]),
    ({"resize_mode": 7}, ["resize_mode"]),
    ({"inpainting_fill": 4}, ["inpainting_fill", "latent nothing"]),
    ({"inpainting_mask_invert": 2}, ["inpainting_mask_invert"]),
    ({"mask": "data:image/png;base64,AAAA"}, ["mask"]),
    ({"steps": 0}, ["steps must be at least 1"]),
])
def test_bad_img2img_values_are_422(http, picture, fields, words):
    refused(http.post(f"{API}/img2img", json=txt2img_body(**{"init_images": [picture], **fields})), *words)


def test_empty_mask_with_only_masked_is_422(http, picture):
    from PIL import Image

    empty = png_base64(Image.new("L", (64, 64), 0))
    refused(http.post(f"{API}/img2img", json=txt2img_body(init_images=[picture], mask=empty, inpaint_full_res=True)),
            "mask is empty", "inpaint_full_res")
    # the whole picture with an empty mask is allowed (nothing is repainted)
    whole = http.post(f"{API}/img2img", json=txt2img_body(init_images=[picture], mask=empty, inpaint_full_res=False))
    assert whole.status_code == 200, whole.text


@pytest.mark.parametrize("fields, words", [
    ({"hr_upscaler": "R-ESRGAN 4x+"}, ["hr_upscaler", "R-ESRGAN 4x+", "Latent (bicubic)", "Lanczos"]),
    ({"hr_upscaler": "ESRGAN_4x"}, ["ESRGAN_4x", "available"]),
    ({"hr_scale": 0.5}, ["hr_scale"]),
    ({"denoising_strength": 3}, ["denoising_strength"]),
    ({"hr_second_pass_steps": -1}, ["hr_second_pass_steps"]),
    ({"hr_sampler_name": "Nope"}, ["hr_sampler_name", "Nope"]),
    ({"hr_scheduler": "sideways"}, ["hr_scheduler"]),
    ({"hr_scale": 64}, ["hires width", "more than the server allows"]),
])
def test_bad_hires_values_are_422(http, fields, words):
    refused(http.post(f"{API}/txt2img", json=txt2img_body(enable_hr=True, **fields)), *words)


def test_webuiapi_img2img_with_a_mask(live, picture):
    webuiapi = pytest.importorskip("webuiapi")
    client = webuiapi.WebUIApi(host="127.0.0.1", port=live.port, sampler="Euler", steps=3)
    source = decode_png(picture).convert("RGB")
    from PIL import Image

    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 16, 16))  # the top-left corner
    result = client.img2img(images=[source], mask_image=mask, prompt="a green square <hypernet:water:1>",
                            denoising_strength=0.9, width=64, height=64, seed=5, inpaint_full_res_padding=8)
    assert result.image.size == (64, 64)
    got, kept = pixels(result.image), pixels(source)
    assert (got[40:, 40:] == kept[40:, 40:]).all()  # far from the mask (blur 4 included): untouched
    assert np.abs(got[:12, :12] - kept[:12, :12]).mean() > 2
    assert 'Hypernetworks: "water: 1"' in result.info["infotexts"][0]
    assert "Inpaint area: Only masked" in result.info["infotexts"][0]
