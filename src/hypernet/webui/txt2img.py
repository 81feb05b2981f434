"""The txt2img tab: prompt with the strength slider, parameters, the card tabs, Generate
with a live progress bar and preview, Interrupt, the gallery and the copyable infotext.

Generation runs as a job on the service's one worker (the same queue as the API); the
handler polls `service.jobs.snapshot()` and yields progress until the job ends.
"""

from __future__ import annotations

import time

import gradio as gr

from ..errors import HypernetError
from ..generation import Request
from ..request import LATENT_UPSCALERS, PIXEL_UPSCALERS, HiresFix
from ..samplers import DEFAULT_SAMPLER
from .controls import batch_row, output_column, output_states, sampling_row, size_row
from .common import POLL_SECONDS, _bar, error_html, note_html, optional_int, progress_html


def default_size(service) -> int:
    """The loaded family's native size: 64 for the embedded toy model, else 512."""
    return 64 if service.checkpoints.default.path is None else 512


HIRES_FIELDS = ("enable_hr", "hr_upscaler", "hr_steps", "hr_denoise", "hr_scale", "hr_resize_x", "hr_resize_y")


def make_request(prompt, negative, sampler, schedule, steps, cfg, width, height, seed, batch_size,
                 batch_count, enable_hr=False, hr_upscaler="Latent", hr_steps=0, hr_denoise=0.7, hr_scale=2.0,
                 hr_resize_x=0, hr_resize_y=0, **more) -> Request:
    steps = optional_int(steps, "steps")
    hires = None
    if enable_hr:
        hires = HiresFix(scale=float(hr_scale or 2.0), upscaler=hr_upscaler or "Latent",
                         steps=optional_int(hr_steps, "hires steps") or 0,
                         denoising_strength=float(0.7 if hr_denoise is None else hr_denoise),
                         resize_width=optional_int(hr_resize_x, "resize width to") or 0,
                         resize_height=optional_int(hr_resize_y, "resize height to") or 0)
    return Request(prompt=prompt or "", negative_prompt=negative or "", sampler=sampler or DEFAULT_SAMPLER,
                   schedule=schedule if schedule and schedule != "Automatic" else None, steps=steps or 0,
                   cfg_scale=float(cfg if cfg is not None else 7.0), width=optional_int(width, "width"),
                   height=optional_int(height, "height"),
                   seed=-1 if seed in (None, "") else optional_int(seed, "seed"),
                   batch_size=optional_int(batch_size, "batch size") or 1,
                   batch_count=optional_int(batch_count, "batch count") or 1, hires=hires, **more)


def generate(service, *values):
    """Yields (progress, preview, gallery, infotext, error, last seed, infotexts)."""
    yield from follow(service, lambda: service.txt2img(make_request(*values),
                                                       save_images=bool(service.options.get("samples_save"))))


def follow(service, submit):
    """Submit a generation job (`submit()`) and follow it: yields (progress, preview,
    gallery, infotext, error, last seed, infotexts) until it ends.

    A request the service refuses (unknown hypernetwork with its closest names, bad
    size, unknown sampler) is answered at once in the error box under the prompt."""
    skip = gr.skip
    try:
        job = submit()
    except HypernetError as problem:
        yield ("", gr.update(visible=False), skip(), skip(), error_html(problem), skip(), skip())
        return
    yield (progress_html(None), gr.update(visible=False), skip(), skip(), "", skip(), skip())
    while not job.future.done():
        time.sleep(POLL_SECONDS)
        state = service.jobs.snapshot()
        preview = service.current_image() if state.runs(job.id) and state.sampling_step else None
        yield (progress_html(state, job.id), gr.update(visible=True, value=preview) if preview is not None else skip(),
               skip(), skip(), skip(), skip(), skip())
    try:
        generation = job.future.result()
    except HypernetError as problem:
        yield (_bar(0, "failed"), gr.update(visible=False), skip(), skip(), error_html(problem), skip(), skip())
        return
    except Exception as problem:  # noqa: BLE001 - shown to the user, the server keeps running
        yield (_bar(0, "failed"), gr.update(visible=False), skip(), skip(), error_html(problem), skip(), skip())
        return
    results = generation.results
    infotexts = [r.infotext for r in results]
    notes = list(generation.warnings)
    if generation.interrupted:
        notes.insert(0, f"interrupted: {len(results)} image(s) as far as they got")
    gallery = [(r.image, f"seed {r.seed}") for r in results]
    done = _bar(1.0, f"done: {len(results)} image(s)" + (f", saved to {generation.saved[0].parent}"
                                                         if generation.saved else ""))
    yield (done, gr.update(visible=False), gallery, infotexts[0] if infotexts else "",
           note_html("; ".join(notes)), results[0].seed if results else skip(), infotexts)


def build(service, cards_builder):
    """The tab's components; `cards_builder(kind, prompt, selected, strength)` adds a card tab."""
    size = default_size(service)
    c = {}
    with gr.Row(elem_id="txt2img_toprow"):
        with gr.Column(scale=6):
            c["prompt"] = gr.Textbox(label="Prompt", lines=3, elem_id="txt2img_prompt",
                                     placeholder="Prompt (click a card below to add its <hypernet:NAME:1> tag)")
            c["negative"] = gr.Textbox(label="Negative prompt", lines=2, elem_id="txt2img_neg_prompt")
        with gr.Column(scale=2, min_width=220):
            with gr.Row():
                c["generate"] = gr.Button("Generate", variant="primary", elem_id="txt2img_generate", scale=2)
                c["interrupt"] = gr.Button("Interrupt", elem_id="txt2img_interrupt", scale=1)
            c["strength"] = gr.Slider(0, 2, value=float(service.options.get("extra_networks_default_multiplier")),
                                      step=0.05, label="Strength (click a card)", elem_id="txt2img_strength")
            c["send_to_grid"] = gr.Button("Send to grid", size="sm", elem_id="txt2img_send_to_grid")
    c["error"] = gr.HTML("", elem_id="txt2img_error")
    c["selected"] = gr.State(None)
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            with gr.Tabs(elem_id="txt2img_extra_tabs"):
                with gr.Tab("Generation", id="generation", elem_id="txt2img_generation_tab"):
                    sampling_row(c, "txt2img")
                    size_row(c, "txt2img", size)
                    batch_row(c, "txt2img")
                    c["cfg"] = gr.Slider(1, 30, value=7, step=0.5, label="CFG Scale", elem_id="txt2img_cfg_scale")
                    with gr.Row(elem_id="txt2img_seed_row"):
                        c["seed"] = gr.Number(-1, label="Seed", precision=0, elem_id="txt2img_seed", scale=4)
                        c["dice"] = gr.Button("\U0001f3b2", elem_id="txt2img_random_seed", scale=0, min_width=48)
                        c["recycle"] = gr.Button("\u267b", elem_id="txt2img_reuse_seed", scale=0, min_width=48)
                    hires_controls(c, size)
                for kind, title in (("hypernet", "Hypernetworks"), ("lora", "LoRA"),
                                    ("embedding", "Textual Inversion")):
                    with gr.Tab(title, id=kind, elem_id=f"txt2img_{kind}_tab"):
                        c[f"{kind}_cards"] = cards_builder(kind, c["prompt"], c["selected"], c["strength"])
        output_column(c, "txt2img")
    output_states(c)
    _wire(service, c)
    return c


def hires_controls(c, size: int) -> None:
    """The webui's "Hires. fix" block: upscaler, hires steps, denoising strength, upscale
    by, or resize width/height to (0: from the scale)."""
    with gr.Accordion("Hires. fix", open=False, elem_id="txt2img_hr"):
        c["enable_hr"] = gr.Checkbox(False, label="Upscale with the hires fix", elem_id="txt2img_enable_hr")
        with gr.Row():
            c["hr_upscaler"] = gr.Dropdown([*LATENT_UPSCALERS, *PIXEL_UPSCALERS], value="Latent", label="Upscaler",
                                           elem_id="txt2img_hr_upscaler")
            c["hr_steps"] = gr.Slider(0, 150, value=0, step=1, label="Hires steps (0: as sampling steps)",
                                      elem_id="txt2img_hires_steps")
            c["hr_denoise"] = gr.Slider(0, 1, value=0.7, step=0.01, label="Denoising strength",
                                        elem_id="txt2img_denoising_strength")
        with gr.Row():
            c["hr_scale"] = gr.Slider(1, 4, value=2, step=0.05, label="Upscale by", elem_id="txt2img_hr_scale")
            c["hr_resize_x"] = gr.Slider(0, 2048, value=0, step=8, label="Resize width to",
                                         elem_id="txt2img_hr_resize_x")
            c["hr_resize_y"] = gr.Slider(0, 2048, value=0, step=8, label="Resize height to",
                                         elem_id="txt2img_hr_resize_y")


def _wire(service, c) -> None:
    from .networks import change_strength

    fields = [c[k] for k in ("prompt", "negative", "sampler", "schedule", "steps", "cfg", "width", "height", "seed",
                             "batch_size", "batch_count", *HIRES_FIELDS)]
    outputs = [c[k] for k in ("progress", "preview", "gallery", "infotext", "error", "last_seed", "infotexts")]

    def run(*values):
        yield from generate(service, *values)

    c["generate"].click(run, fields, outputs, concurrency_limit=None, show_progress="hidden")
    c["prompt"].submit(run, fields, outputs, concurrency_limit=None, show_progress="hidden")
    c["interrupt"].click(lambda: service.jobs.interrupt() and None, None, None, queue=False)
    c["dice"].click(lambda: -1, None, c["seed"], queue=False)
    c["recycle"].click(lambda seed: seed, c["last_seed"], c["seed"], queue=False)
    c["strength"].input(change_strength, [c["prompt"], c["selected"], c["strength"]], c["prompt"], queue=False)

    def pick(infotexts, event: gr.SelectData):
        index = event.index if isinstance(event.index, int) else 0
        return infotexts[index] if 0 <= index < len(infotexts) else gr.skip()

    c["gallery"].select(pick, c["infotexts"], c["infotext"], queue=False)
