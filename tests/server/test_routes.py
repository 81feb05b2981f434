"""Every /sdapi/v1 route's happy path, over HTTP against a live server on the toy model."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest
import torch

from .live import STEPS, decode_png, info_of, txt2img_body

API = "/sdapi/v1"


def test_txt2img_with_a_hypernet_tag(http):
    answer = http.post(f"{API}/txt2img", json=txt2img_body("a red circle on a blue background <hypernet:water:1>"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"images", "parameters", "info"}
    assert len(body["images"]) == 1
    image = decode_png(body["images"][0])
    assert image.format == "PNG" and image.size == (64, 64)  # the toy model's native size
    assert "<hypernet:water:1>" in image.info["parameters"]
    assert "Steps: 3" in image.info["parameters"]
    assert 'Hypernetworks: "water: 1"' in image.info["parameters"]
    info = info_of(answer)
    assert info["all_seeds"] == [1]
    assert info["all_prompts"] == ["a red circle on a blue background <hypernet:water:1>"]
    assert info["infotexts"] == [image.info["parameters"]]
    assert info["width"] == 64 and info["height"] == 64 and info["steps"] == STEPS
    assert info["sd_model_name"] == "hypernet-toy"
    assert info["warnings"] == [] and info["interrupted"] is False
    assert body["parameters"]["prompt"].endswith("<hypernet:water:1>")
    assert body["parameters"]["steps"] == STEPS


def test_txt2img_batches_and_seeds(http):
    answer = http.post(f"{API}/txt2img", json=txt2img_body(seed=7, batch_size=2, n_iter=2, steps=2))
    assert answer.status_code == 200, answer.text
    info = info_of(answer)
    assert info["all_seeds"] == [7, 8, 9, 10]
    assert len(answer.json()["images"]) == 4 == len(info["infotexts"]) == len(info["all_prompts"])
    assert "Batch size: 2" in info["infotexts"][0]


def test_txt2img_same_seed_same_picture(http):
    first, second = (http.post(f"{API}/txt2img", json=txt2img_body(seed=5)) for _ in range(2))
    assert first.json()["images"] == second.json()["images"]


def test_txt2img_send_images_false_and_save_images(http, live):
    answer = http.post(f"{API}/txt2img", json=txt2img_body(send_images=False, save_images=True))
    assert answer.status_code == 200, answer.text
    assert answer.json()["images"] == []
    saved = info_of(answer)["saved"]
    assert len(saved) == 1 and Path(saved[0]).is_file()
    assert Path(saved[0]).is_relative_to(live.service.paths.outputs_dir)


def test_override_settings_sd_hypernetwork_adds_the_tag(http):
    body = txt2img_body("a red circle", override_settings={"sd_hypernetwork": "neon",
                                                           "extra_networks_default_multiplier": 0.5})
    answer = http.post(f"{API}/txt2img", json=body)
    assert answer.status_code == 200, answer.text
    info = info_of(answer)
    assert info["all_prompts"] == ["a red circle<hypernet:neon:0.5>"]  # appended without a separator, as the webui
    assert 'Hypernetworks: "neon: 0.5"' in info["infotexts"][0]
    # restored afterwards (override_settings_restore_afterwards defaults to true)
    assert http.get(f"{API}/options").json()["sd_hypernetwork"] == "None"


def test_override_settings_already_tagged_is_not_tagged_twice(http):
    body = txt2img_body("a red circle <hypernet:neon:0.3>", override_settings={"sd_hypernetwork": "neon"})
    info = info_of(http.post(f"{API}/txt2img", json=body))
    assert info["all_prompts"] == ["a red circle <hypernet:neon:0.3>"]


def test_override_settings_kept_when_not_restored(http):
    body = txt2img_body("a red circle", override_settings={"sd_hypernetwork": "neon"},
                        override_settings_restore_afterwards=False)
    try:
        assert http.post(f"{API}/txt2img", json=body).status_code == 200
        assert http.get(f"{API}/options").json()["sd_hypernetwork"] == "neon"
    finally:
        http.post(f"{API}/options", json={"sd_hypernetwork": "None"})


def test_override_settings_clip_skip(http):
    plain = http.post(f"{API}/txt2img", json=txt2img_body())
    skipped = http.post(f"{API}/txt2img", json=txt2img_body(override_settings={"CLIP_stop_at_last_layers": 2}))
    assert skipped.status_code == 200, skipped.text
    info = info_of(skipped)
    assert "Clip skip: 2" in info["infotexts"][0] and info["clip_skip"] == 2
    assert "Clip skip" not in info_of(plain)["infotexts"][0]
    assert skipped.json()["images"] != plain.json()["images"]


def test_sampler_scheduler_and_variation_seed(http):
    body = txt2img_body(sampler_name="DPM++ 2M", scheduler="karras", subseed=3, subseed_strength=0.5)
    answer = http.post(f"{API}/txt2img", json=body)
    assert answer.status_code == 200, answer.text
    text = info_of(answer)["infotexts"][0]
    assert "Sampler: DPM++ 2M" in text and "Schedule type: Karras" in text
    assert "Variation seed: 3" in text and "Variation seed strength: 0.5" in text


def test_unsupported_known_fields_are_accepted_with_a_warning(http):
    answer = http.post(f"{API}/txt2img", json=txt2img_body(denoising_strength=0.5, restore_faces=True, tiling=True))
    assert answer.status_code == 200, answer.text
    warnings = " ".join(info_of(answer)["warnings"])
    for name in ("denoising_strength", "restore_faces", "tiling"):
        assert f"{name} is not supported yet" in warnings


def test_unknown_fields_are_ignored(http):
    answer = http.post(f"{API}/txt2img", json=txt2img_body(no_such_field=1, controlnet_units=[{"x": 1}],
                                                             override_settings={"no_such_option": 3}))
    assert answer.status_code == 200, answer.text
    assert "no_such_field" not in answer.json()["parameters"]
    assert "override_settings.no_such_option has no effect here" in " ".join(info_of(answer)["warnings"])


def test_hypernetworks_listing_and_refresh(http, live):
    listed = http.get(f"{API}/hypernetworks").json()
    names = [entry["name"] for entry in listed]
    assert {"water", "neon"} <= set(names)
    assert all(set(entry) == {"name", "path"} and Path(entry["path"]).is_file() for entry in listed)
    shutil.copy(next(Path(e["path"]) for e in listed if e["name"] == "water"), live.service.paths.hypernet_dir / "copied.pt")
    assert "copied" not in names
    refreshed = http.post(f"{API}/refresh-hypernetworks")
    assert refreshed.status_code == 200 and refreshed.json()["count"] == len(listed) + 1
    assert "copied" in [entry["name"] for entry in http.get(f"{API}/hypernetworks").json()]


def test_progress_when_idle(http):
    answer = http.get(f"{API}/progress")
    assert answer.status_code == 200
    body = answer.json()
    assert body["progress"] == 0 and body["current_image"] is None
    assert {"job", "job_count", "job_no", "sampling_step", "sampling_steps", "interrupted", "skipped"} <= set(body["state"])
    assert "eta_relative" in body and "textinfo" in body


def test_interrupt_and_skip_when_idle(http):
    assert http.post(f"{API}/interrupt").json() == {"interrupted": False}
    assert http.post(f"{API}/skip").json() == {"skipped": False}


def test_options_get_and_post(http):
    options = http.get(f"{API}/options").json()
    for name in ("sd_model_checkpoint", "sd_hypernetwork", "extra_networks_default_multiplier",
                 "CLIP_stop_at_last_layers"):
        assert name in options
    assert options["sd_model_checkpoint"] == "hypernet-toy"
    answer = http.post(f"{API}/options", json={"sd_hypernetwork": "water", "extra_networks_default_multiplier": 0.7,
                                                "some_webui_only_option": 1})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"ignored": ["some_webui_only_option"]}
    try:
        options = http.get(f"{API}/options").json()
        assert options["sd_hypernetwork"] == "water" and options["extra_networks_default_multiplier"] == 0.7
        info = info_of(http.post(f"{API}/txt2img", json=txt2img_body("a red circle")))
        assert info["all_prompts"] == ["a red circle<hypernet:water:0.7>"]
    finally:
        http.post(f"{API}/options", json={"sd_hypernetwork": "None", "extra_networks_default_multiplier": 1.0})
    assert http.post(f"{API}/options", json={"CLIP_stop_at_last_layers": 1}).json() is None


def test_options_rejects_bad_values(http):
    answer = http.post(f"{API}/options", json={"CLIP_stop_at_last_layers": "two"})
    assert answer.status_code == 422
    assert "CLIP_stop_at_last_layers" in answer.json()["detail"]
    answer = http.post(f"{API}/options", json={"sd_hypernetwork": "no-such-network"})
    assert answer.status_code == 404


def test_samplers_and_schedulers(http):
    samplers = http.get(f"{API}/samplers").json()
    names = [s["name"] for s in samplers]
    assert "Euler a" in names and "DPM++ 2M" in names
    assert all(set(s) == {"name", "aliases", "options"} for s in samplers)
    schedulers = http.get(f"{API}/schedulers").json()
    assert [s["name"] for s in schedulers][:2] == ["automatic", "karras"]
    assert all({"name", "label"} <= set(s) for s in schedulers)


def test_png_info_reads_back_the_infotext(http):
    image = http.post(f"{API}/txt2img", json=txt2img_body("a green square <hypernet:neon:0.8>")).json()["images"][0]
    for data in (image, "data:image/png;base64," + image):
        answer = http.post(f"{API}/png-info", json={"image": data})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["info"].startswith("a green square <hypernet:neon:0.8>\nSteps: 3")
        assert body["parameters"]["Prompt"] == "a green square <hypernet:neon:0.8>"
        assert str(body["parameters"]["Seed"]) == "1"
    assert http.post(f"{API}/png-info", json={"image": ""}).json() == {"info": "", "items": {}, "parameters": {}}


def test_png_info_rejects_what_is_not_an_image(http):
    answer = http.post(f"{API}/png-info", json={"image": base64.b64encode(b"not a picture").decode()})
    assert answer.status_code == 422 and "not a readable image" in answer.json()["detail"]


def test_png_info_refuses_huge_images(http):
    """A PNG that says 20000x10000 (PIL's own decompression-bomb bound) and one of 9000x8000."""
    import io
    import struct
    import zlib

    from PIL import Image

    for width, height in ((20000, 10000), (9000, 8000)):
        buffer = io.BytesIO()
        Image.new("L", (8, 8)).save(buffer, format="PNG")
        data = bytearray(buffer.getvalue())
        data[16:24] = struct.pack(">II", width, height)  # IHDR's size; the pixels are never read
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
        answer = http.post(f"{API}/png-info", json={"image": base64.b64encode(bytes(data)).decode()})
        assert answer.status_code == 422, answer.text
        assert "more pixels than the server reads" in answer.json()["detail"]


def test_loras_and_refresh(http, live):
    assert http.get(f"{API}/loras").json() == []
    folder = live.service.paths.lora_dir
    folder.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    save_file({"lora_unet_x.lora_down.weight": torch.zeros(1, 1)}, str(folder / "tiny.safetensors"),
              metadata={"ss_output_name": "tiny"})
    assert http.post(f"{API}/refresh-loras").json() == {"count": 1}
    (entry,) = http.get(f"{API}/loras").json()
    assert entry["name"] == "tiny" and entry["metadata"] == {"ss_output_name": "tiny"}
    assert Path(entry["path"]) == folder / "tiny.safetensors"


def test_embeddings_and_refresh(http, live):
    assert http.get(f"{API}/embeddings").json() == {"loaded": {}, "skipped": {}}
    width = live.service._generator.pipe.text_encoder.config.hidden_size
    folder = live.service.paths.embeddings_dir
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"string_to_param": {"*": torch.zeros(2, width)}}, folder / "mytoken.pt")
    torch.save({"string_to_param": {"*": torch.zeros(2, width + 1)}}, folder / "wrongwidth.pt")
    body = http.post(f"{API}/refresh-embeddings").json()
    assert body["loaded"]["mytoken"]["vectors"] == 2 and body["loaded"]["mytoken"]["shape"] == width
    assert "wrongwidth" not in body["loaded"] and len(body["skipped"]) == 1
    assert http.get(f"{API}/embeddings").json() == body
    answer = http.post(f"{API}/txt2img", json=txt2img_body("a red circle mytoken"))
    assert answer.status_code == 200, answer.text


def test_memory(http):
    body = http.get(f"{API}/memory").json()
    assert body["ram"]["total"] > 0 and "cuda" in body


def test_img2img_without_a_picture_is_422(http):
    answer = http.post(f"{API}/img2img", json={"prompt": "x", "init_images": []})
    assert answer.status_code == 422
    assert "init_images" in answer.json()["detail"]


def test_openapi_docs(http):
    assert http.get("/docs").status_code == 200
    paths = http.get("/openapi.json").json()["paths"]
    for route in ("txt2img", "img2img", "upscalers", "latent-upscale-modes", "progress", "hypernetworks", "create/hypernetwork", "train/hypernetwork",
                  "options", "sd-models", "png-info", "memory"):
        assert f"{API}/{route}" in paths


@pytest.fixture(scope="module")
def toy_copy(live):
    """The embedded model as a diffusers folder in models/Stable-diffusion."""
    from hypernet.toy.model import shipped_model_folder

    target = live.service.paths.checkpoint_dir / "toy-copy"
    shutil.copytree(shipped_model_folder(), target)
    return target


def test_sd_models_refresh_and_switching_checkpoints(http, live, toy_copy):
    assert http.post(f"{API}/refresh-checkpoints").json() == {"count": 2}
    models = http.get(f"{API}/sd-models").json()
    assert [m["model_name"] for m in models] == ["hypernet-toy", "toy-copy"]
    assert all({"title", "model_name", "hash", "sha256", "filename", "config"} <= set(m) for m in models)
    assert models[1]["filename"] == str(toy_copy)
    try:
        answer = http.post(f"{API}/options", json={"sd_model_checkpoint": "toy-copy"})
        assert answer.status_code == 200, answer.text
        assert http.get(f"{API}/options").json()["sd_model_checkpoint"] == "toy-copy"
        assert live.service.loaded_model.path == toy_copy
        generated = http.post(f"{API}/txt2img", json=txt2img_body("a red circle <hypernet:water:1>"))
        assert generated.status_code == 200, generated.text
        assert info_of(generated)["sd_model_name"] == "toy-copy"
    finally:
        assert http.post(f"{API}/options", json={"sd_model_checkpoint": "hypernet-toy"}).status_code == 200
    assert live.service.loaded_model.path is None


def test_override_settings_checkpoint_for_one_request(http, live, toy_copy):
    http.post(f"{API}/refresh-checkpoints")
    answer = http.post(f"{API}/txt2img", json=txt2img_body(override_settings={"sd_model_checkpoint": "toy-copy"}))
    assert answer.status_code == 200, answer.text
    assert info_of(answer)["sd_model_name"] == "toy-copy"
    assert http.get(f"{API}/options").json()["sd_model_checkpoint"] == "hypernet-toy"
    back = http.post(f"{API}/txt2img", json=txt2img_body())
    assert info_of(back)["sd_model_name"] == "hypernet-toy"


def test_unknown_checkpoint_is_404_with_the_list(http):
    answer = http.post(f"{API}/options", json={"sd_model_checkpoint": "nope.safetensors"})
    assert answer.status_code == 404
    assert "nope.safetensors" in answer.json()["detail"] and "hypernet-toy" in answer.json()["detail"]
