"""Gradio controls that several tabs lay out alike (txt2img, img2img, the strength grid),
with the webui's element ids under each tab's prefix."""

from __future__ import annotations

import gradio as gr

from ..samplers import DEFAULT_SAMPLER, SAMPLERS, SCHEDULES


def sampling_row(c: dict, prefix: str) -> None:
    """Sampling method, schedule type and steps, in one row."""
    with gr.Row():
        c["sampler"] = gr.Dropdown(list(SAMPLERS), value=DEFAULT_SAMPLER, label="Sampling method",
                                   elem_id=f"{prefix}_sampler")
        c["schedule"] = gr.Dropdown(list(SCHEDULES), value="Automatic", label="Schedule type",
                                    elem_id=f"{prefix}_scheduler")
        c["steps"] = gr.Slider(1, 150, value=20, step=1, label="Sampling steps", elem_id=f"{prefix}_steps")


def size_row(c: dict, prefix: str, size: int) -> None:
    """Width and height sliders, in one row."""
    with gr.Row():
        c["width"] = gr.Slider(8, 2048, value=size, step=8, label="Width", elem_id=f"{prefix}_width")
        c["height"] = gr.Slider(8, 2048, value=size, step=8, label="Height", elem_id=f"{prefix}_height")


def batch_row(c: dict, prefix: str) -> None:
    with gr.Row():
        c["batch_count"] = gr.Slider(1, 100, value=1, step=1, label="Batch count", elem_id=f"{prefix}_batch_count")
        c["batch_size"] = gr.Slider(1, 16, value=1, step=1, label="Batch size", elem_id=f"{prefix}_batch_size")


def output_column(c: dict, prefix: str) -> None:
    """Progress, live preview, gallery and infotext, plus the states the tab's handlers
    keep (the last seed, every picture's infotext)."""
    with gr.Column(scale=2):
        c["progress"] = gr.HTML("", elem_id=f"{prefix}_progress")
        c["preview"] = gr.Image(label="Live preview", visible=False, interactive=False, height=256,
                                elem_id=f"{prefix}_live_preview")
        c["gallery"] = gr.Gallery(label="Output", columns=2, height="auto", elem_id=f"{prefix}_gallery",
                                  object_fit="contain")
        c["infotext"] = gr.Textbox(label="Generation parameters", lines=4, interactive=False,
                                   buttons=["copy"], elem_id=f"{prefix}_infotext")


def output_states(c: dict) -> None:
    c["last_seed"] = gr.State(-1)
    c["infotexts"] = gr.State([])
