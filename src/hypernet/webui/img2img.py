"""The img2img tab: a picture to start from (paint on it to inpaint, or upload a mask),
the prompt with its tags, the sampling parameters, denoising strength and the webui's
inpaint options; the same job queue, progress bar and gallery as txt2img."""

from __future__ import annotations

import gradio as gr

from ..errors import HypernetError
from ..img2img_images import RESIZE_MODES
from ..request import MASKED_CONTENT, Img2Img
from .controls import batch_row, output_column, output_states, sampling_row, size_row
from .txt2img import follow, make_request

INPAINT_AREAS = ("Whole picture", "Only masked")
MASK_MODES = ("Inpaint masked", "Inpaint not masked")
SETTINGS = ("denoise", "resize_mode", "mask_blur", "mask_mode", "masked_content", "inpaint_area", "padding")


def picture_and_mask(editor, uploaded_mask):
    """(init picture, mask or None) from the editor's value: the picture is its
    background; strokes painted on its layers are the mask, unless a mask is uploaded."""
    if editor is None:
        raise HypernetError("img2img needs a picture: upload one into the picture box")
    if not isinstance(editor, dict):  # a plain picture
        return editor, uploaded_mask
    picture = editor.get("background") or editor.get("composite")
    if picture is None:
        raise HypernetError("img2img needs a picture: upload one into the picture box")
    if uploaded_mask is not None:
        return picture, uploaded_mask
    from PIL import Image, ImageChops

    mask = None
    for layer in editor.get("layers") or []:
        if layer is None:
            continue
        alpha = layer.convert("RGBA").getchannel("A").point(lambda value: 255 if value > 0 else 0)
        if alpha.size != picture.size:
            alpha = alpha.resize(picture.size, Image.NEAREST)
        mask = alpha if mask is None else ImageChops.lighter(mask, alpha)
    if mask is not None and mask.getbbox() is None:
        mask = None  # nothing painted: plain img2img
    return picture, mask


def make_img2img_request(editor, uploaded_mask, denoise, resize_mode, mask_blur, mask_mode, masked_content,
                         inpaint_area, padding, *values):
    picture, mask = picture_and_mask(editor, uploaded_mask)
    settings = Img2Img(picture, denoising_strength=float(denoise), resize_mode=resize_mode or "just resize",
                       mask=mask, mask_blur=int(mask_blur or 0), masked_content=masked_content or "original",
                       only_masked=inpaint_area == "Only masked", only_masked_padding=int(padding or 0),
                       invert_mask=mask_mode == "Inpaint not masked")
    problems = settings.problems()
    if problems:
        raise HypernetError("; ".join(problems))
    return make_request(*values, img2img=settings)


def generate(service, *values):
    """Yields what `txt2img.follow` yields, for an img2img job."""
    yield from follow(service, lambda: service.generate(make_img2img_request(*values), kind="img2img",
                                                        save_images=bool(service.options.get("samples_save"))))


def build(service, size: int):
    c = {}
    with gr.Row():
        with gr.Column(scale=6):
            c["prompt"] = gr.Textbox(label="Prompt", lines=3, elem_id="img2img_prompt",
                                     placeholder="Prompt, with <hypernet:NAME:1> tags")
            c["negative"] = gr.Textbox(label="Negative prompt", lines=2, elem_id="img2img_neg_prompt")
        with gr.Column(scale=2, min_width=220):
            with gr.Row():
                c["generate"] = gr.Button("Generate", variant="primary", elem_id="img2img_generate", scale=2)
                c["interrupt"] = gr.Button("Interrupt", elem_id="img2img_interrupt", scale=1)
    c["error"] = gr.HTML("", elem_id="img2img_error")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            c["editor"] = gr.ImageEditor(label="Picture (paint over it to inpaint)", type="pil",
                                         elem_id="img2img_image", height=360)
            c["mask"] = gr.Image(label="Mask (optional; white = repaint; replaces what is painted)", type="pil",
                                 image_mode="L", elem_id="img2img_mask", height=200)
            c["denoise"] = gr.Slider(0, 1, value=0.75, step=0.01, label="Denoising strength",
                                     elem_id="img2img_denoising_strength")
            c["resize_mode"] = gr.Radio(list(RESIZE_MODES), value="just resize", label="Resize mode",
                                        elem_id="img2img_resize_mode")
            with gr.Accordion("Inpaint", open=False, elem_id="img2img_inpaint"):
                with gr.Row():
                    c["mask_blur"] = gr.Slider(0, 64, value=4, step=1, label="Mask blur", elem_id="img2img_mask_blur")
                    c["padding"] = gr.Slider(0, 256, value=32, step=4, label="Only masked padding, pixels",
                                             elem_id="img2img_inpaint_full_res_padding")
                c["mask_mode"] = gr.Radio(list(MASK_MODES), value="Inpaint masked", label="Mask mode",
                                          elem_id="img2img_mask_mode")
                c["masked_content"] = gr.Radio(list(MASKED_CONTENT), value="original", label="Masked content",
                                               elem_id="img2img_inpainting_fill")
                c["inpaint_area"] = gr.Radio(list(INPAINT_AREAS), value="Whole picture", label="Inpaint area",
                                             elem_id="img2img_inpaint_full_res")
            sampling_row(c, "img2img")
            size_row(c, "img2img", size)
            batch_row(c, "img2img")
            c["cfg"] = gr.Slider(1, 30, value=7, step=0.5, label="CFG Scale", elem_id="img2img_cfg_scale")
            c["seed"] = gr.Number(-1, label="Seed", precision=0, elem_id="img2img_seed")
        output_column(c, "img2img")
    output_states(c)
    fields = [c[k] for k in ("editor", "mask", *SETTINGS, "prompt", "negative", "sampler", "schedule", "steps", "cfg",
                             "width", "height", "seed", "batch_size", "batch_count")]
    outputs = [c[k] for k in ("progress", "preview", "gallery", "infotext", "error", "last_seed", "infotexts")]

    def run(*values):
        yield from generate(service, *values)

    c["generate"].click(run, fields, outputs, concurrency_limit=None, show_progress="hidden")
    c["interrupt"].click(lambda: service.jobs.interrupt() and None, None, None, queue=False)

    def pick(infotexts, event: gr.SelectData):
        index = event.index if isinstance(event.index, int) else 0
        return infotexts[index] if 0 <= index < len(infotexts) else gr.skip()

    c["gallery"].select(pick, c["infotexts"], c["infotext"], queue=False)
    return c
