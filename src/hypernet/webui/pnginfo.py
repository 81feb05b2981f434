"""The PNG Info tab: drop a PNG, read its `parameters` text (webui infotext), and send
them to txt2img."""

from __future__ import annotations

import html

from ..errors import HypernetError
from .common import error_html


def read_parameters(image) -> str:
    """The webui's `parameters` text chunk of an uploaded picture ("" when none)."""
    if image is None:
        return ""
    info = getattr(image, "info", {}) or {}
    text = info.get("parameters")
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return text or ""


def parameters_table(text: str) -> str:
    from ..infotext import parse_infotext

    if not text:
        return '<div class="hn-note">This picture has no generation parameters.</div>'
    prompt, negative, params = parse_infotext(text)
    rows = [("Prompt", prompt), ("Negative prompt", negative), *params.items()]
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows if v != "")
    return f'<table class="hn-pnginfo">{body}</table>'


def to_txt2img(text: str) -> tuple:
    """(prompt, negative, sampler, schedule, steps, cfg, width, height, seed) from infotext."""
    from ..infotext import parse_infotext
    from ..samplers import DEFAULT_SAMPLER, split_name

    if not text:
        raise HypernetError("no generation parameters to send: drop a PNG made by hypernet or the webui first")
    prompt, negative, params = parse_infotext(text)
    sampler, schedule = split_name(str(params.get("Sampler", DEFAULT_SAMPLER)), params.get("Schedule type"))
    size = str(params.get("Size", "")).split("x")
    width, height = (int(size[0]), int(size[1])) if len(size) == 2 and all(s.isdigit() for s in size) else (None, None)
    skip = _skip()
    return (prompt, negative, sampler, schedule, int(params.get("Steps", 20)), float(params.get("CFG scale", 7.0)),
            width if width else skip, height if height else skip, int(params.get("Seed", -1)))


def _skip():
    import gradio as gr

    return gr.skip()


def build():
    import gradio as gr

    c = {}
    with gr.Row(equal_height=False):
        with gr.Column():
            c["image"] = gr.Image(label="Source", type="pil", image_mode=None, sources=["upload", "clipboard"],
                                  elem_id="pnginfo_image")
        with gr.Column():
            c["table"] = gr.HTML("", elem_id="pnginfo_table")
            c["text"] = gr.Textbox(label="Parameters", lines=5, interactive=False, buttons=["copy"],
                                   elem_id="pnginfo_text")
            c["send"] = gr.Button("Send to txt2img", elem_id="pnginfo_send_to_txt2img")
            c["error"] = gr.HTML("", elem_id="pnginfo_error")

    def on_image(image):
        text = read_parameters(image)
        try:
            return parameters_table(text), text, ""
        except HypernetError as problem:
            return "", text, error_html(problem)

    c["image"].change(on_image, c["image"], [c["table"], c["text"], c["error"]])
    return c
