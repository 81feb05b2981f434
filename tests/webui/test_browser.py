"""The web UI in a real browser (Debian's chromium, headless, through Playwright) against
a real server on the embedded model: cards, strength slider, generation, training.
Each step leaves a screenshot in tests/webui/artifacts/."""

from __future__ import annotations

import re

import pytest

from .conftest import shoot

pytestmark = [pytest.mark.needs_toy_model, pytest.mark.slow]


def box(page, elem_id: str):
    """The text or number box of a Gradio field (a textarea for text, an input for numbers)."""
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first


def prompt_of(page) -> str:
    return page.locator("#txt2img_prompt textarea").input_value()


def wait_prompt(page, pattern: str) -> str:
    page.wait_for_function(
        "pattern => new RegExp(pattern).test(document.querySelector('#txt2img_prompt textarea').value)",
        arg=pattern)
    return prompt_of(page)


def test_card_click_strength_slider_and_generate(page):
    shoot(page, "01-open")
    page.locator("#txt2img_prompt textarea").fill("a red circle on a blue background")
    page.locator("#txt2img_seed input").fill("1")
    page.get_by_role("tab", name="Hypernetworks").click()
    card = page.locator("#hypernet_cards .hn-card[data-name='water']")
    card.wait_for()
    assert page.locator("#hypernet_cards .hn-card[data-name='neon']").count() == 1
    shoot(page, "02-hypernetworks-tab")

    card.click()
    assert wait_prompt(page, "<hypernet:water:1>") == "a red circle on a blue background <hypernet:water:1>"
    page.wait_for_selector("#hypernet_cards .hn-card-selected[data-name='water']")
    shoot(page, "03-card-clicked")

    page.locator("#txt2img_strength input[type=range]").fill("0.6")
    assert wait_prompt(page, "<hypernet:water:0.6>") == "a red circle on a blue background <hypernet:water:0.6>"
    shoot(page, "04-strength-0.6")

    page.locator("#txt2img_generate").click()
    page.wait_for_selector("#txt2img_gallery img", timeout=120_000)
    page.wait_for_function("document.querySelector('#txt2img_infotext textarea').value.includes('Seed: 1')")
    infotext = page.locator("#txt2img_infotext textarea").input_value()
    assert infotext.startswith("a red circle on a blue background <hypernet:water:0.6>")
    assert re.search(r"Hypernet: water, Hypernet strength: 0\.6|<hypernet:water:0\.6>", infotext)
    assert "Steps: 20" in infotext and "Size: 64x64" in infotext
    assert "100%" in page.locator("#txt2img_progress").inner_text()
    shoot(page, "05-generated")

    # the card's info panel: structure, step and hash from Library.info
    card.locator("[data-action=info]").click()
    info = page.locator("#hypernet_card_info_text")
    info.get_by_text("sha256").wait_for()
    assert "step" in info.inner_text() and "32, 64, 80" in info.inner_text()
    shoot(page, "06-card-info")

    # a second click on the card removes its tag
    card.click()
    assert wait_prompt(page, "^[^<]*$") == "a red circle on a blue background"


def test_send_to_grid_and_make_a_strength_grid(page):
    page.locator("#txt2img_prompt textarea").fill("a red circle on a blue background <hypernet:neon:0.5>")
    page.locator("#txt2img_send_to_grid").click()
    page.wait_for_function("document.querySelector('#grid_prompt textarea')?.value === "
                           "'a red circle on a blue background'")
    assert box(page, "grid_network").input_value() == "neon"
    box(page, "grid_multipliers").fill("0, 0.5, 1")
    box(page, "grid_seeds").fill("3")
    box(page, "grid_steps").fill("8")
    page.locator("#grid_generate").click()
    page.locator("#grid_image img").wait_for(timeout=120_000)
    assert "done: 3 images" in page.locator("#grid_progress").inner_text()
    shoot(page, "07-strength-grid")


def test_unknown_hypernetwork_is_shown_next_to_the_prompt(page):
    page.locator("#txt2img_prompt textarea").fill("a red circle <hypernet:watr:1>")
    page.locator("#txt2img_generate").click()
    error = page.locator("#txt2img_error .hn-error")
    error.wait_for()
    assert "watr" in error.inner_text() and "water" in error.inner_text()
    shoot(page, "08-unknown-hypernetwork")


def test_create_train_and_see_the_loss_plot(page, server):
    from hypernet.toy import world

    url, service, root = server
    data = root / "water-set"
    world.write_style_set(data, "water", count=8)

    page.get_by_role("tab", name="Train").click()
    box(page, "create_name").fill("mine")
    assert box(page, "create_sizes").input_value() == "80, 32, 64"
    page.locator("#create_button").click()
    page.locator("#create_result").get_by_text("created").wait_for()
    shoot(page, "09-created")

    page.get_by_role("tab", name="Train", exact=True).nth(1).click()
    network = box(page, "train_network")
    page.wait_for_function("document.querySelector('#train_network input').value === 'mine'")
    box(page, "train_data").fill(str(data))
    box(page, "train_learning_rate").fill("0.001")
    box(page, "train_batch_size").fill("2")
    box(page, "train_max_steps").fill("6")
    box(page, "train_save_every").fill("3")
    box(page, "train_preview_every").fill("3")
    page.get_by_text("More options").click()
    box(page, "train_preview_steps").fill("5")
    page.locator("#train_button").click()
    page.locator("#train_status").get_by_text("finished").wait_for(timeout=150_000)
    assert "step 0 -> 6" in page.locator("#train_status").inner_text()
    plot = page.locator("#train_loss_plot")
    plot.locator("canvas, svg").first.wait_for()
    page.locator("#train_preview img").wait_for()
    shoot(page, "10-trained-loss-plot")
    assert network.input_value() == "mine"

    # the result is in the library and on the cards, with its description editable
    page.get_by_role("tab", name="txt2img").click()
    page.get_by_role("tab", name="Hypernetworks").click()
    card = page.locator("#hypernet_cards .hn-card[data-name='mine']")
    card.wait_for()
    card.locator("[data-action=info]").click()
    page.locator("#hypernet_card_info_text").get_by_text("step").first.wait_for()
    assert "6" in page.locator("#hypernet_card_info_text").inner_text()
    page.locator("#hypernet_card_description textarea").fill("my water, 6 steps")
    page.locator("#hypernet_card_save").click()
    card.locator(".hn-card-description").get_by_text("my water, 6 steps").wait_for()
    assert service.library.resolve("mine").description == "my water, 6 steps"
    shoot(page, "11-new-card")


def test_png_info_sends_parameters_to_txt2img(page, tmp_path):
    from PIL import Image

    from hypernet.infotext import write_png

    text = ("a red circle <hypernet:water:0.6>\nNegative prompt: blurry\nSteps: 12, Sampler: DPM++ 2M, "
            "Schedule type: Karras, CFG scale: 5, Seed: 42, Size: 64x64")
    path = write_png(Image.new("RGB", (64, 64), "red"), tmp_path / "in.png", text)
    page.get_by_role("tab", name="PNG Info").click()
    page.locator("#pnginfo_image input[type=file]").set_input_files(str(path))
    page.locator("#pnginfo_table table").wait_for()
    assert "Karras" in page.locator("#pnginfo_table").inner_text()
    shoot(page, "12-png-info")
    page.locator("#pnginfo_send_to_txt2img").click()
    assert wait_prompt(page, "water") == "a red circle <hypernet:water:0.6>"
    page.get_by_role("tab", name="Generation").click()
    assert box(page, "txt2img_seed").input_value() == "42"
    assert page.locator("#txt2img_steps input[type=number]").input_value() == "12"
    assert box(page, "txt2img_neg_prompt").input_value() == "blurry"


def test_img2img_tab_inpaints_with_an_uploaded_mask(page, tmp_path):
    from PIL import Image

    picture, mask = tmp_path / "picture.png", tmp_path / "mask.png"
    Image.new("RGB", (64, 64), (30, 60, 200)).save(picture)
    half = Image.new("L", (64, 64), 0)
    half.paste(255, (0, 0, 32, 64))
    half.save(mask)
    page.get_by_role("tab", name="img2img").click()
    page.locator("#img2img_prompt textarea").fill("a red circle <hypernet:water:1>")
    page.locator("#img2img_seed input").fill("3")
    page.locator("#img2img_image input[type=file]").first.set_input_files(str(picture))
    page.locator("#img2img_mask input[type=file]").set_input_files(str(mask))
    page.locator("#img2img_mask img").wait_for()
    shoot(page, "13-img2img-inputs")
    page.locator("#img2img_generate").click()
    page.wait_for_selector("#img2img_gallery img", timeout=120_000)
    page.wait_for_function("document.querySelector('#img2img_infotext textarea').value.includes('Seed: 3')")
    infotext = page.locator("#img2img_infotext textarea").input_value()
    assert infotext.startswith("a red circle <hypernet:water:1>")
    for field in ("Denoising strength: 0.75", "Mask blur: 4", "Masked content: original", 'Hypernetworks: "water: 1"'):
        assert field in infotext, infotext
    assert page.locator("#img2img_error").inner_text() == ""
    shoot(page, "14-img2img-inpainted")


def test_txt2img_hires_fix_controls(page):
    page.locator("#txt2img_prompt textarea").fill("a red circle on a blue background")
    page.locator("#txt2img_seed input").fill("4")
    page.locator("#txt2img_hr").get_by_text("Hires. fix").first.click()
    page.locator("#txt2img_enable_hr input[type=checkbox]").check()
    page.locator("#txt2img_steps input[type=range]").fill("4")
    page.locator("#txt2img_generate").click()
    page.wait_for_function("document.querySelector('#txt2img_infotext textarea').value.includes('Seed: 4')",
                           timeout=120_000)
    infotext = page.locator("#txt2img_infotext textarea").input_value()
    assert "Hires upscale: 2" in infotext and "Hires upscaler: Latent" in infotext and "Size: 64x64" in infotext
    width = page.wait_for_function(
        "() => { const img = document.querySelector('#txt2img_gallery img'); "
        "return img && img.complete && img.naturalWidth ? img.naturalWidth : null; }").json_value()
    assert width == 128
    shoot(page, "15-hires-fix")
