"""The Train tab: the create form (every option of `hypernet create`) and the train form
(every option of `hypernet train`), with a live loss plot and preview pictures while a
run goes, and Interrupt (the run saves first). Both run through the service, so the
result lands in the library and the cards are refreshed by the caller (`blocks.py`)."""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import HypernetError
from ..samplers import DEFAULT_SAMPLER, SAMPLERS
from ..training.config import (CHECKPOINTING, CLIP_MODES, LATENT_SAMPLING, PRECISIONS,
                               RESIZE_MODES, PreviewOptions, TrainingConfig)
from .common import POLL_SECONDS, error_html, note_html, number_list, optional_int, whole_list

CREATE_FIELDS = ("name", "sizes", "layer_structure", "activation", "weight_init", "layer_norm", "use_dropout",
                 "dropout_structure", "activate_output", "optional_info", "file_format", "overwrite", "seed")
TRAIN_FIELDS = ("network", "data", "template", "template_dirs", "learning_rate", "batch_size",
                "gradient_accumulation", "max_steps", "width", "height", "resize", "flip", "filename_word_regex",
                "filename_join", "shuffle_tags", "tag_dropout", "caption_dropout", "latent_sampling", "clip_grad",
                "clip_value", "use_alpha_weight", "save_every", "preview_every", "preview_prompt", "preview_negative",
                "preview_steps", "preview_sampler", "preview_cfg", "preview_seed", "preview_width", "preview_height",
                "log_dir", "run_dir", "csv_every", "seed", "precision", "gradient_checkpointing",
                "save_optimizer_state", "tensorboard")


def create_network(service, name, sizes, layer_structure, activation, weight_init, layer_norm, use_dropout,
                   dropout_structure, activate_output, optional_info, file_format, overwrite, seed) -> str:
    from ..server.training_jobs import CreateForm, create

    form = CreateForm(
        name=name or "", sizes=tuple(whole_list(sizes, "sizes")),
        layer_structure=tuple(number_list(layer_structure, "layer structure")), activation=activation,
        weight_init=weight_init, layer_norm=bool(layer_norm), use_dropout=bool(use_dropout),
        dropout_structure=tuple(number_list(dropout_structure, "dropout structure")) if use_dropout else (0.0,),
        activate_output=bool(activate_output), optional_info=optional_info or None, overwrite=bool(overwrite),
        file_format=file_format or "pt", seed=_seed(seed, "seed"))
    path = create(service, form)
    return f"created {path}"


def _seed(value, label: str) -> int | None:
    """-1 (or an empty box) is "random" / "the run's", as the webui's seed fields."""
    seed = optional_int(value, label)
    return None if seed is None or seed < 0 else seed


def _text(value) -> str | None:
    value = (value or "").strip() if isinstance(value, str) else value
    return value or None


def training_config(service, values: dict) -> TrainingConfig:
    """The form's values as a `TrainingConfig` (empty boxes: the CLI's defaults)."""
    v, ours = values, TrainingConfig(data=".")
    preview = PreviewOptions(prompt=_text(v["preview_prompt"]), negative_prompt=v["preview_negative"] or "",
                             steps=optional_int(v["preview_steps"], "preview steps") or 20,
                             sampler=v["preview_sampler"] or DEFAULT_SAMPLER, cfg_scale=float(v["preview_cfg"]),
                             seed=_seed(v["preview_seed"], "preview seed"),
                             width=optional_int(v["preview_width"], "preview width") or None,
                             height=optional_int(v["preview_height"], "preview height") or None)
    if not _text(v["data"]):
        raise HypernetError("data folder: give the folder of training images (with .txt captions)")
    return TrainingConfig(
        data=Path(v["data"].strip()), learning_rate=_text(v["learning_rate"]) or ours.learning_rate,
        batch_size=optional_int(v["batch_size"], "batch size"),
        gradient_accumulation=optional_int(v["gradient_accumulation"], "gradient accumulation"),
        max_steps=optional_int(v["max_steps"], "max steps"),
        width=optional_int(v["width"], "width") or None, height=optional_int(v["height"], "height") or None,
        resize=v["resize"], flip=bool(v["flip"]), template=_text(v["template"]) or ours.template,
        template_dirs=tuple(p.strip() for p in (v["template_dirs"] or "").split(",") if p.strip()),
        filename_word_regex=v["filename_word_regex"] or "", filename_join=v["filename_join"] or " ",
        shuffle_tags=bool(v["shuffle_tags"]), tag_dropout=float(v["tag_dropout"] or 0),
        caption_dropout=float(v["caption_dropout"] or 0), latent_sampling=v["latent_sampling"],
        clip_grad=v["clip_grad"], clip_value=_text(v["clip_value"]) or ours.clip_value,
        use_alpha_weight=bool(v["use_alpha_weight"]), save_every=optional_int(v["save_every"], "save every"),
        preview_every=optional_int(v["preview_every"], "preview every"), preview=preview,
        log_dir=_text(v["log_dir"]) or str(service.paths.training_dir), run_dir=_text(v["run_dir"]),
        csv_every=optional_int(v["csv_every"], "CSV every"), seed=_seed(v["seed"], "seed"),
        precision=v["precision"], gradient_checkpointing=v["gradient_checkpointing"],
        save_optimizer_state=bool(v["save_optimizer_state"]), tensorboard=bool(v["tensorboard"]))


def enlarged(picture, side: int = 256):
    """Small previews (64 px on the embedded model) scaled up by a whole factor."""
    if picture is None:
        return None
    factor = max(1, side // max(picture.size))
    if factor == 1:
        return picture
    from PIL import Image

    return picture.resize((picture.width * factor, picture.height * factor), Image.NEAREST)


def loss_frame(losses):
    import pandas

    return pandas.DataFrame({"step": [int(s) for s, _ in losses], "loss": [float(l) for _, l in losses]})


def run_training(service, *values):
    """Yields (status, loss plot, preview, error)."""
    import gradio as gr

    from ..server.training_jobs import describe, train

    fields = dict(zip(TRAIN_FIELDS, values))
    try:
        if not fields["network"]:
            raise HypernetError("choose the hypernetwork to train (create one above first)")
        config = training_config(service, fields)
        job = train(service, fields["network"], config)
    except HypernetError as problem:
        yield gr.skip(), gr.skip(), gr.skip(), error_html(problem)
        return
    yield note_html("waiting in the queue"), loss_frame([]), gr.skip(), ""
    shown = 0
    while not job.future.done():
        time.sleep(POLL_SECONDS)
        state = service.jobs.snapshot()
        if state.job_id != job.id:
            continue
        status = note_html((state.textinfo or "").replace("<br/>", " · "))
        plot = loss_frame(state.losses) if len(state.losses) != shown else gr.skip()
        shown = len(state.losses)
        yield status, plot, enlarged(state.preview) if state.preview is not None else gr.skip(), gr.skip()
    try:
        result = job.future.result()
    except Exception as problem:  # noqa: BLE001 - shown next to the form
        yield gr.skip(), gr.skip(), gr.skip(), error_html(problem)
        return
    preview = gr.skip()
    if result.previews:
        from PIL import Image

        with Image.open(result.previews[-1]) as picture:
            preview = enlarged(picture.copy())
    yield note_html(describe(result)), loss_frame(result.losses or service.jobs.snapshot().losses), preview, ""


def build(service):
    import gradio as gr

    from ..network import ACTIVATIONS, DEFAULT_SIZES, WEIGHT_INITS
    from ..training.defaults import network_options
    from .grid import network_choices

    toy = service.checkpoints.default.path is None
    ours = TrainingConfig(data=".")  # the form opens with hypernet's defaults (docs/training.md, Defaults)
    sizes = "80, 32, 64" if toy else ", ".join(map(str, DEFAULT_SIZES))
    templates = sorted(p.name for p in (Path(__file__).resolve().parents[1] / "data" / "templates").glob("*.txt"))
    c = {}
    with gr.Tabs():
        with gr.Tab("Create hypernetwork", id="create", elem_id="train_create_tab"):
            with gr.Row():
                c["name"] = gr.Textbox(label="Name", elem_id="create_name")
                c["sizes"] = gr.Textbox(sizes, label="Modules (feature sizes)", elem_id="create_sizes",
                                        info="768, 320, 640, 1280 for SD 1.x; 80, 32, 64 for the embedded toy model")
                c["layer_structure"] = gr.Textbox("1, 2, 1", label="Layer structure", elem_id="create_layer_structure")
            with gr.Row():
                c["activation"] = gr.Dropdown(sorted(ACTIVATIONS), value="linear", label="Activation function",
                                              elem_id="create_activation")
                c["weight_init"] = gr.Dropdown(list(WEIGHT_INITS), value=network_options()["weight_init"], label="Weight initialization",
                                               elem_id="create_weight_init")
                c["file_format"] = gr.Radio(["pt", "safetensors"], value="pt", label="Format", elem_id="create_format")
                c["seed"] = gr.Number(-1, label="Seed for the initial weights (-1: random)", precision=0,
                                      elem_id="create_seed")
            with gr.Row():
                c["layer_norm"] = gr.Checkbox(label="Add layer normalization", elem_id="create_layer_norm")
                c["use_dropout"] = gr.Checkbox(label="Use dropout", elem_id="create_use_dropout")
                c["dropout_structure"] = gr.Textbox("0, 0, 0", label="Dropout structure",
                                                    elem_id="create_dropout_structure")
                c["activate_output"] = gr.Checkbox(label="Activate output layer too", elem_id="create_activate_output")
                c["overwrite"] = gr.Checkbox(label="Overwrite an existing file", elem_id="create_overwrite")
            c["optional_info"] = gr.Textbox(label="Optional info", elem_id="create_optional_info")
            c["create"] = gr.Button("Create hypernetwork", variant="primary", elem_id="create_button")
            c["create_result"] = gr.HTML("", elem_id="create_result")
        with gr.Tab("Train", id="train", elem_id="train_train_tab"):
            choices = network_choices(service)
            with gr.Row():
                c["network"] = gr.Dropdown(choices, value=None, label="Hypernetwork", allow_custom_value=True,
                                           elem_id="train_network")
                c["data"] = gr.Textbox(label="Dataset directory", elem_id="train_data")
                c["template"] = gr.Dropdown(templates, value=ours.template, label="Prompt template",
                                            allow_custom_value=True, elem_id="train_template")
            with gr.Row():
                c["learning_rate"] = gr.Textbox(ours.learning_rate, label="Learning rate (schedule: RATE:STEP, RATE)",
                                                elem_id="train_learning_rate")
                c["batch_size"] = gr.Number(ours.batch_size, label="Batch size", precision=0, elem_id="train_batch_size")
                c["gradient_accumulation"] = gr.Number(ours.gradient_accumulation, label="Gradient accumulation steps", precision=0,
                                                       elem_id="train_gradient_accumulation")
                c["max_steps"] = gr.Number(ours.max_steps, label="Max steps", precision=0, elem_id="train_max_steps")
            with gr.Row():
                c["width"] = gr.Number(0, label="Width (0: native)", precision=0, elem_id="train_width")
                c["height"] = gr.Number(0, label="Height (0: native)", precision=0, elem_id="train_height")
                c["resize"] = gr.Dropdown(list(RESIZE_MODES), value="stretch", label="Resize", elem_id="train_resize")
                c["latent_sampling"] = gr.Dropdown(list(LATENT_SAMPLING), value="once", label="Latent sampling",
                                                   elem_id="train_latent_sampling")
            with gr.Row():
                c["save_every"] = gr.Number(ours.save_every, label="Save a copy every N steps (0: final only)", precision=0,
                                            elem_id="train_save_every")
                c["preview_every"] = gr.Number(ours.preview_every, label="Preview every N steps (0: none)", precision=0,
                                               elem_id="train_preview_every")
                c["caption_dropout"] = gr.Slider(0, 0.95, value=ours.caption_dropout, step=0.05, label="Caption dropout",
                                                 elem_id="train_caption_dropout")
                c["seed"] = gr.Number(-1, label="Seed (-1: random)", precision=0, elem_id="train_seed")
            with gr.Accordion("More options", open=False):
                with gr.Row():
                    c["flip"] = gr.Checkbox(label="Random horizontal flip", elem_id="train_flip")
                    c["shuffle_tags"] = gr.Checkbox(label="Shuffle tags", elem_id="train_shuffle_tags")
                    c["use_alpha_weight"] = gr.Checkbox(label="Alpha channel as loss weight", elem_id="train_alpha")
                    c["tag_dropout"] = gr.Slider(0, 0.95, value=0, step=0.05, label="Tag dropout",
                                                 elem_id="train_tag_dropout")
                with gr.Row():
                    c["clip_grad"] = gr.Dropdown(list(CLIP_MODES), value=ours.clip_grad, label="Gradient clipping",
                                                 elem_id="train_clip_grad")
                    c["clip_value"] = gr.Textbox(ours.clip_value, label="Clip value (schedule)", elem_id="train_clip_value")
                    c["filename_word_regex"] = gr.Textbox(label="Filename word regex", elem_id="train_word_regex")
                    c["filename_join"] = gr.Textbox(" ", label="Filename join string", elem_id="train_join")
                with gr.Row():
                    c["preview_prompt"] = gr.Textbox(label="Preview prompt (empty: the batch's first)",
                                                     elem_id="train_preview_prompt")
                    c["preview_negative"] = gr.Textbox(label="Preview negative prompt", elem_id="train_preview_neg")
                    c["preview_steps"] = gr.Number(20, label="Preview steps", precision=0,
                                                   elem_id="train_preview_steps")
                    c["preview_sampler"] = gr.Dropdown(list(SAMPLERS), value=DEFAULT_SAMPLER, label="Preview sampler",
                                                       elem_id="train_preview_sampler")
                with gr.Row():
                    c["preview_cfg"] = gr.Number(7.0, label="Preview CFG", elem_id="train_preview_cfg")
                    c["preview_seed"] = gr.Number(-1, label="Preview seed (-1: the run seed)", precision=0,
                                                  elem_id="train_preview_seed")
                    c["preview_width"] = gr.Number(0, label="Preview width (0: training)", precision=0,
                                                   elem_id="train_preview_width")
                    c["preview_height"] = gr.Number(0, label="Preview height (0: training)", precision=0,
                                                    elem_id="train_preview_height")
                with gr.Row():
                    c["log_dir"] = gr.Textbox(str(service.paths.training_dir), label="Log directory",
                                              elem_id="train_log_dir")
                    c["run_dir"] = gr.Textbox(label="Run folder (empty: LOG/DATE/NAME)", elem_id="train_run_dir")
                    c["template_dirs"] = gr.Textbox(label="Extra template folders (comma-separated)",
                                                    elem_id="train_template_dirs")
                    c["csv_every"] = gr.Number(1, label="Loss CSV every N steps", precision=0,
                                               elem_id="train_csv_every")
                with gr.Row():
                    c["precision"] = gr.Dropdown(list(PRECISIONS), value="auto", label="Precision",
                                                 elem_id="train_precision")
                    c["gradient_checkpointing"] = gr.Dropdown(list(CHECKPOINTING), value="auto",
                                                              label="Gradient checkpointing",
                                                              elem_id="train_gradient_checkpointing")
                    c["save_optimizer_state"] = gr.Checkbox(True, label="Save optimizer state",
                                                            elem_id="train_save_optimizer")
                    c["tensorboard"] = gr.Checkbox(label="TensorBoard logs", elem_id="train_tensorboard")
            with gr.Row():
                c["train"] = gr.Button("Train hypernetwork", variant="primary", elem_id="train_button")
                c["interrupt"] = gr.Button("Interrupt (saves first)", elem_id="train_interrupt")
            c["error"] = gr.HTML("", elem_id="train_error")
            c["status"] = gr.HTML("", elem_id="train_status")
            with gr.Row(equal_height=False):
                c["plot"] = gr.LinePlot(loss_frame([]), x="step", y="loss", title="Loss", height=280,
                                        elem_id="train_loss_plot", scale=3)
                c["preview"] = gr.Image(label="Preview", interactive=False, height=280, elem_id="train_preview",
                                        scale=2)

    def on_create(*values):
        try:
            return note_html(create_network(service, *values))
        except HypernetError as problem:
            return error_html(problem)

    c["create_event"] = c["create"].click(on_create, [c[k] for k in CREATE_FIELDS], c["create_result"])

    def on_train(*values):
        yield from run_training(service, *values)

    c["train_event"] = c["train"].click(on_train, [c[k] for k in TRAIN_FIELDS],
                                        [c["status"], c["plot"], c["preview"], c["error"]], concurrency_limit=None,
                                        show_progress="hidden")
    c["interrupt"].click(lambda: service.jobs.interrupt() and None, None, None, queue=False)
    return c
