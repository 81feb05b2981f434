"""The Strength grid tab: one network at several multipliers over several seeds, as
`hypernet grid` draws it, run as a job on the service's worker."""

from __future__ import annotations

import math
import time

from ..errors import HypernetError
from ..generation import Request
from ..samplers import DEFAULT_SAMPLER, SAMPLERS
from .common import POLL_SECONDS, _bar, error_html, number_list, progress_html, whole_list

DEFAULT_MULTIPLIERS = "0, 0.25, 0.5, 0.75, 1"


class _CountingGenerator:
    """Lets `strength_grid` report each cell's steps and obey Interrupt."""

    def __init__(self, generator, context, cells: int):
        self.generator, self.context, self.done = generator, context, 0
        context.update(job="grid", job_count=cells, job_no=0)

    def generate(self, request, progress: bool = False):
        context = self.context
        context.control.on_step = lambda info: context.update(sampling_step=info.step, sampling_steps=info.steps)
        results = self.generator.generate(request, progress=False, control=context.control)
        self.done += 1
        context.update(job_no=self.done, sampling_step=0)
        return results


def submit_grid(service, network, prompt, negative, multipliers_text, seeds_text, steps, sampler, cfg, width, height):
    """Check everything, then queue the grid; returns the job (result: (image, rows))."""
    from ..strength import strength_grid, with_multiplier

    if not network:
        raise HypernetError("choose a hypernetwork for the grid")
    multipliers = number_list(multipliers_text, "multipliers")
    bad = [m for m in multipliers if not math.isfinite(m)]
    if bad:
        raise HypernetError(f"multipliers: {bad[0]} is not a finite number")
    seeds = whole_list(seeds_text, "seeds") if str(seeds_text or "").strip() else [1]
    entry = service.resolve_hypernetwork(network)
    name = service.library.tag_name(entry)
    base = Request(prompt=prompt or "", negative_prompt=negative or "", steps=int(steps), cfg_scale=float(cfg),
                   seed=seeds[0], width=int(width), height=int(height), sampler=sampler or DEFAULT_SAMPLER)
    service.check_request(Request(**{**base.__dict__, "prompt": with_multiplier(base.prompt, name, 1.0)}))
    model = service.checkpoints.resolve(service.options.get("sd_model_checkpoint"))
    cells = len(multipliers) * len(seeds)

    def run(context):
        generator = _CountingGenerator(service._ensure_model(model, context), context, cells)
        return strength_grid(generator, base, name, multipliers, seeds, progress=False)

    return service.jobs.submit("grid", run)


def run_grid(service, *values):
    """Yields (progress, grid image, error)."""
    import gradio as gr

    try:
        job = submit_grid(service, *values)
    except HypernetError as problem:
        yield "", gr.skip(), error_html(problem)
        return
    yield progress_html(None), gr.skip(), ""
    while not job.future.done():
        time.sleep(POLL_SECONDS)
        yield progress_html(service.jobs.snapshot(), job.id), gr.skip(), gr.skip()
    try:
        image, rows = job.future.result()
    except Exception as problem:  # noqa: BLE001 - shown next to the form
        yield _bar(0, "failed"), gr.skip(), error_html(problem)
        return
    yield _bar(1.0, f"done: {sum(len(r) for r in rows)} images"), image, ""


def network_choices(service) -> list[str]:
    names = []
    for entry in service.library.entries():
        try:
            names.append(service.library.tag_name(entry))
        except HypernetError:
            continue
    return names


def build(service, size: int):
    import gradio as gr

    from .controls import size_row

    c = {}
    choices = network_choices(service)
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            c["network"] = gr.Dropdown(choices, value=choices[0] if choices else None, label="Hypernetwork",
                                       allow_custom_value=True, elem_id="grid_network")
            c["prompt"] = gr.Textbox(label="Prompt (without the network's tag)", lines=2, elem_id="grid_prompt")
            c["negative"] = gr.Textbox(label="Negative prompt", elem_id="grid_neg_prompt")
            with gr.Row():
                c["multipliers"] = gr.Textbox(DEFAULT_MULTIPLIERS, label="Multipliers", elem_id="grid_multipliers")
                c["seeds"] = gr.Textbox("1, 2", label="Seeds", elem_id="grid_seeds")
            with gr.Row():
                c["steps"] = gr.Slider(1, 150, value=20, step=1, label="Sampling steps", elem_id="grid_steps")
                c["sampler"] = gr.Dropdown(list(SAMPLERS), value=DEFAULT_SAMPLER, label="Sampling method",
                                           elem_id="grid_sampler")
                c["cfg"] = gr.Slider(1, 30, value=7, step=0.5, label="CFG Scale", elem_id="grid_cfg_scale")
            size_row(c, "grid", size)
            with gr.Row():
                c["run"] = gr.Button("Make grid", variant="primary", elem_id="grid_generate")
                c["interrupt"] = gr.Button("Interrupt", elem_id="grid_interrupt")
            c["error"] = gr.HTML("", elem_id="grid_error")
        with gr.Column(scale=4):
            c["progress"] = gr.HTML("", elem_id="grid_progress")
            c["image"] = gr.Image(label="Strength grid", interactive=False, elem_id="grid_image", format="png")
    inputs = [c[k] for k in ("network", "prompt", "negative", "multipliers", "seeds", "steps", "sampler", "cfg",
                             "width", "height")]

    def run(*values):
        yield from run_grid(service, *values)

    c["run"].click(run, inputs, [c["progress"], c["image"], c["error"]], concurrency_limit=None,
                   show_progress="hidden")
    c["interrupt"].click(lambda: service.jobs.interrupt() and None, None, None, queue=False)
    return c
