"""The web UI's handlers without a browser: prompt editing by cards and the strength
slider, and errors shown next to their field (never a traceback)."""

from __future__ import annotations

import pytest

from hypernet.errors import HypernetError
from hypernet.webui import cards, networks
from hypernet.webui.blocks import grid_from_prompt



@pytest.fixture
def service(tmp_path):
    from hypernet.server import ServerPaths, Service

    return Service(ServerPaths(hypernet_dir=tmp_path / "hypernetworks", checkpoint_dir=tmp_path / "checkpoints",
                               lora_dir=tmp_path / "lora", embeddings_dir=tmp_path / "embeddings",
                               outputs_dir=tmp_path / "outputs", training_dir=tmp_path / "training"))


def test_a_card_toggles_its_tag_and_the_slider_edits_the_selected_one():
    prompt, added = cards.toggle_tag("a red circle", "hypernet", "water", 1.0)
    assert (prompt, added) == ("a red circle <hypernet:water:1>", True)
    prompt, _ = cards.toggle_tag(prompt, "hypernet", "neon", 0.75)
    assert prompt == "a red circle <hypernet:water:1> <hypernet:neon:0.75>"
    assert networks.change_strength(prompt, ("hypernet", "water"), 0.6) == \
        "a red circle <hypernet:water:0.6> <hypernet:neon:0.75>"
    assert networks.change_strength(prompt, None, 0.3) == "a red circle <hypernet:water:1> <hypernet:neon:0.3>"
    assert cards.toggle_tag(prompt, "hypernet", "water", 1.0) == ("a red circle <hypernet:neon:0.75>", False)
    # a LoRA's second weight survives the slider; an embedding is a word
    assert cards.set_multiplier("x <lora:style:1:0.5>", "lora", "style", 0.8) == "x <lora:style:0.8:0.5>"
    assert cards.toggle_tag("x, ", "embedding", "bad-hands", 1) == ("x, bad-hands", True)
    assert cards.toggle_tag("x, bad-hands, y", "embedding", "bad-hands", 1) == ("x, y", False)
    assert grid_from_prompt("a cat <hypernet:water:0.6> sitting") == ("a cat sitting", "water")


def test_click_card_uses_the_default_multiplier_option(service):
    service.set_options({"extra_networks_default_multiplier": 0.8})
    prompt, selected, multiplier = networks.click_card(service, "a red circle", "hypernet", "water")
    assert (prompt, selected, multiplier) == ("a red circle <hypernet:water:0.8>", ("hypernet", "water"), 0.8)
    prompt, selected, _ = networks.click_card(service, prompt, "hypernet", "water")
    assert (prompt, selected) == ("a red circle", None)


def test_cards_search_sort_and_placeholder(service):
    from hypernet.creation import create_hypernetwork

    create_hypernetwork("zeta", service.paths.hypernet_dir / "mine", sizes=[80, 32, 64])
    service.library.refresh()
    html = networks.render_cards(service, "hypernet", prompt="<hypernet:water:1>")
    assert html.index('data-name="neon"') < html.index('data-name="water"') < html.index('data-name="zeta"')
    assert 'hn-card hn-card-selected" id="card-hypernet-water"' in html
    assert 'style="background-image:url(webui/thumbnail?kind=hypernet&amp;name=water&amp;v=' in html
    assert "hn-card-placeholder" in html and 'hn-card-folder">mine/' in html  # zeta has none
    newest_first = networks.render_cards(service, "hypernet", sort=cards.SORTS[1])
    assert newest_first.index('data-name="zeta"') < newest_first.index('data-name="water"')
    found = networks.render_cards(service, "hypernet", search="glowing outlines")
    assert 'data-name="neon"' in found and 'data-name="water"' not in found
    assert "No LoRA files" in networks.render_cards(service, "lora")


def test_lora_and_embedding_cards(service):
    for folder, name in ((service.paths.lora_dir / "styles", "paint.safetensors"),
                         (service.paths.embeddings_dir, "bad-hands.pt")):
        folder.mkdir(parents=True)
        (folder / name).write_bytes(b"not read when listing")
    (service.paths.lora_dir / "styles" / "paint.txt").write_text("oil paint", encoding="utf-8")
    html = networks.render_cards(service, "lora")
    assert 'data-name="paint"' in html and 'hn-card-folder">styles/' in html and "oil paint" in html
    assert networks.click_card(service, "a cat", "lora", "paint") == ("a cat <lora:paint:1>", ("lora", "paint"), 1.0)
    assert networks.click_card(service, "a cat", "embedding", "bad-hands") == ("a cat bad-hands", None, None)
    assert 'hn-card-selected" id="card-embedding-bad-hands"' in networks.render_cards(service, "embedding",
                                                                                     prompt="a cat bad-hands")


def test_card_info_and_description(service):
    from hypernet.creation import create_hypernetwork

    text, description = networks.card_info(service, "hypernet", "water")
    assert "sha256" in text and "1000" in text and "32, 64, 80" in text and description.startswith("Demo")
    with pytest.raises(HypernetError, match="shipped inside the package"):
        networks.save_description(service, "hypernet", "water", "mine now")
    create_hypernetwork("mine", service.paths.hypernet_dir, sizes=[80, 32, 64])
    networks.save_description(service, "hypernet", "mine", "a fresh one")
    assert "a fresh one" in networks.render_cards(service, "hypernet")
    assert networks.card_info(service, "hypernet", "mine")[1] == "a fresh one"


def test_unknown_hypernetwork_is_answered_next_to_the_prompt(service):
    from hypernet.webui.txt2img import generate

    updates = list(generate(service, "a red circle <hypernet:watr:1>", "", "Euler a", "Automatic", 20, 7, 64, 64,
                            -1, 1, 1))
    assert len(updates) == 1  # nothing was queued
    error = updates[0][4]
    assert 'class="hn-error"' in error and "watr" in error and "closest names: water" in error
    assert "Traceback" not in error
    updates = list(generate(service, "a red circle <hypernet:water:lots>", "", "Euler a", "Automatic", 20, 7, 64, 64,
                            -1, 1, 1))
    assert len(updates) == 1 and "multiplier &#x27;lots&#x27; is not a number" in updates[0][4]
    assert service.jobs.waiting == 0


def test_bad_multiplier_and_bad_schedule_are_answered_next_to_their_field(service, tmp_path):
    from hypernet.webui.grid import run_grid
    from hypernet.webui.train import TRAIN_FIELDS, run_training

    grid = list(run_grid(service, "water", "a red circle", "", "0, lots, 1", "1", 20, "Euler a", 7, 64, 64))
    assert len(grid) == 1 and "multipliers: &#x27;lots&#x27; is not a number" in grid[0][2]
    grid = list(run_grid(service, "nope", "a red circle", "", "0, 1", "1", 20, "Euler a", 7, 64, 64))
    assert "no hypernetwork named &#x27;nope&#x27;" in grid[0][2]

    (tmp_path / "data").mkdir()
    values = dict(network="water", data=str(tmp_path / "data"), template="style_filewords.txt", template_dirs="",
                  learning_rate="1e-3:abc", batch_size=1, gradient_accumulation=1, max_steps=10, width=0, height=0,
                  resize="stretch", flip=False, filename_word_regex="", filename_join=" ", shuffle_tags=False,
                  tag_dropout=0, caption_dropout=0, latent_sampling="once", clip_grad="disabled", clip_value="0.1",
                  use_alpha_weight=False, save_every=0, preview_every=0, preview_prompt="", preview_negative="",
                  preview_steps=20, preview_sampler="Euler a", preview_cfg=7, preview_seed=-1, preview_width=0,
                  preview_height=0, log_dir=str(tmp_path / "training"), run_dir="", csv_every=1, seed=-1,
                  precision="auto", gradient_checkpointing="auto", save_optimizer_state=True, tensorboard=False)
    assert set(values) == set(TRAIN_FIELDS)
    updates = list(run_training(service, *(values[name] for name in TRAIN_FIELDS)))
    assert len(updates) == 1 and "learning rate" in updates[0][3] and "abc" in updates[0][3]


def test_png_info_reads_parameters_and_sends_them_to_txt2img(tmp_path):
    from PIL import Image

    from hypernet.infotext import write_png
    from hypernet.webui import pnginfo

    text = ("a red circle <hypernet:water:0.6>\nNegative prompt: blurry\nSteps: 12, Sampler: DPM++ 2M, "
            "Schedule type: Karras, CFG scale: 5, Seed: 42, Size: 64x64")
    path = write_png(Image.new("RGB", (64, 64)), tmp_path / "x.png", text)
    with Image.open(path) as image:
        assert pnginfo.read_parameters(image) == text
    assert "Karras" in pnginfo.parameters_table(text)
    assert pnginfo.to_txt2img(text) == ("a red circle <hypernet:water:0.6>", "blurry", "DPM++ 2M", "Karras", 12, 5.0,
                                        64, 64, 42)
    with pytest.raises(HypernetError, match="no generation parameters"):
        pnginfo.to_txt2img("")


def test_thumbnail_route_serves_previews_of_listed_files_only(service):
    from fastapi.testclient import TestClient

    from hypernet.server import create_app

    client = TestClient(create_app(service, manage_service=False))  # no lifespan: no model loaded
    answer = client.get("/webui/thumbnail", params={"kind": "hypernet", "name": "water", "v": "1"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/jpeg"
    assert answer.content[:2] == b"\xff\xd8"
    for kind, name in (("hypernet", "../../etc/passwd"), ("hypernet", "nothing"), ("lora", "water"), ("x", "water")):
        assert client.get("/webui/thumbnail", params={"kind": kind, "name": name}).status_code == 404


def test_card_training_settings_come_from_the_newest_run_folder_of_any_number(service):
    """A second run of one network goes to NAME-2 (training never overwrites a run); the
    card shows the newest run's settings, wherever it went."""
    import json
    import os

    root = service.paths.training_dir
    for index, folder in enumerate(["2026-11-29/mine", "2026-11-30/mine-2", "2026-11-30/other"]):
        (root / folder).mkdir(parents=True)
        settings = root / folder / "settings.json"
        settings.write_text(json.dumps({"run": folder}), encoding="utf-8")
        os.utime(settings, (1_000_000 + index, 1_000_000 + index))
        os.utime(root / folder, (1_000_000 + index, 1_000_000 + index))
    assert networks.training_settings(service, "mine") == {"run": "2026-11-30/mine-2"}
    assert networks.training_settings(service, "nothing") is None


def test_img2img_mask_comes_from_the_painted_strokes_or_the_uploaded_mask():
    from PIL import Image

    from hypernet.webui.img2img import make_img2img_request, picture_and_mask

    picture = Image.new("RGB", (64, 48), (30, 60, 200))
    strokes = Image.new("RGBA", (64, 48), (0, 0, 0, 0))
    strokes.paste((255, 255, 255, 255), (8, 8, 20, 16))
    editor = {"background": picture, "layers": [strokes], "composite": picture}
    image, mask = picture_and_mask(editor, None)
    assert image is picture and mask.mode == "L" and mask.getbbox() == (8, 8, 20, 16)
    uploaded = Image.new("L", (64, 48), 255)
    assert picture_and_mask(editor, uploaded)[1] is uploaded
    blank = {"background": picture, "layers": [Image.new("RGBA", (64, 48), (0, 0, 0, 0))], "composite": picture}
    assert picture_and_mask(blank, None)[1] is None  # nothing painted: plain img2img
    with pytest.raises(HypernetError, match="needs a picture"):
        picture_and_mask(None, None)
    request = make_img2img_request(editor, None, 0.4, "crop and resize", 2, "Inpaint not masked", "latent noise",
                                   "Only masked", 16, "a red circle", "", "Euler", "Automatic", 3, 7, 64, 64, 1, 1, 1)
    settings = request.img2img
    assert (settings.denoising_strength, settings.resize_mode, settings.mask_blur, settings.masked_content) == (
        0.4, "crop and resize", 2, "latent noise")
    assert settings.invert_mask and settings.only_masked and settings.only_masked_padding == 16
    with pytest.raises(HypernetError, match="denoising strength"):
        make_img2img_request(editor, None, 1.5, "just resize", 4, "Inpaint masked", "original", "Whole picture", 32,
                             "x", "", "Euler", "Automatic", 3, 7, 64, 64, 1, 1, 1)


def test_txt2img_hires_controls_make_the_hires_settings():
    from hypernet.webui.txt2img import make_request

    plain = make_request("x", "", "Euler", "Automatic", 3, 7, 64, 64, 1, 1, 1)
    assert plain.hires is None
    hires = make_request("x", "", "Euler", "Automatic", 3, 7, 64, 64, 1, 1, 1, True, "Lanczos", 5.0, 0.4, 1.5,
                         96.0, 0.0).hires
    assert (hires.upscaler, hires.steps, hires.denoising_strength, hires.scale, hires.resize_width,
            hires.resize_height) == ("Lanczos", 5, 0.4, 1.5, 96, 0)
