"""The webui-compatible `/sdapi/v1` routes (contract §8, webui v1.10.1 shapes).

Handlers are thin: they turn a request into a `Service` call, wait for its job without
holding a thread (`await`), and shape the answer as the webui does. Errors become 4xx/5xx
JSON answers in `app.py`, never tracebacks.
"""

from __future__ import annotations

import asyncio
import math
import time

from fastapi import APIRouter, Query, Request

from ..errors import HypernetError
from ..generation import Request as GenerationRequest
from . import api_models as models
from . import api_results as results
from .api_requests import hires_settings, img2img_settings
from .jobs import JobCancelled
from .training_jobs import CreateForm, create, train


class NotImplementedYet(HypernetError):
    """A webui route whose feature hypernet does not have yet (answered 501)."""


async def wait_for(job, request: Request):
    """The job's result; a client that goes away abandons its job (dropped if waiting,
    interrupted if it is a generation already running) and frees the worker."""
    future = asyncio.wrap_future(job.future)
    # not `request.is_disconnected()`: under the app's HTTP middlewares its cancelled
    # receive never sees the disconnect, so a client that left was never noticed
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({future, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if future.done():
        return future.result()
    job.abandon()
    # answered into the closed connection (nobody reads it); raising CancelledError here
    # made the middlewares log "No response returned" for every client that left
    raise JobCancelled("the client disconnected; its job was abandoned")


async def _disconnected(request: Request) -> None:
    """Returns when the client has gone (the body is read: only a disconnect can come)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def router(service) -> APIRouter:
    api = APIRouter(prefix="/sdapi/v1", tags=["webui API"])

    # -- generation ------------------------------------------------------------------------
    async def generate(body, request: Request, kind: str, **settings):
        """Both generation routes: one request, one job on the shared queue."""
        overrides = dict(body.override_settings or {})
        warnings = [f"{name} is not supported yet and was ignored" for name in body.unsupported()]
        warnings += settings.pop("warnings", [])
        accepted, ignored = service.options.checked(overrides)
        warnings += [f"override_settings.{name} has no effect here and was ignored" for name in ignored]
        generation_request = GenerationRequest(
            prompt=service.prepare_prompt(body.prompt, accepted.get("sd_hypernetwork"),
                                          accepted.get("extra_networks_default_multiplier")),
            negative_prompt=body.negative_prompt, steps=body.steps, cfg_scale=body.cfg_scale, seed=body.seed,
            width=body.width, height=body.height, sampler=body.sampler_name or body.sampler_index,
            schedule=results.schedule_name(body.scheduler),
            batch_size=body.batch_size, batch_count=body.n_iter, subseed=body.subseed,
            subseed_strength=body.subseed_strength,
            clip_skip=accepted.get("CLIP_stop_at_last_layers", service.options.get("CLIP_stop_at_last_layers")),
            **settings,
        )
        job = service.generate(generation_request, kind=kind, save_images=body.save_images,
                               checkpoint=accepted.get("sd_model_checkpoint"), warnings=warnings)
        generation = await wait_for(job, request)
        if not body.override_settings_restore_afterwards and accepted:
            service.set_options(accepted)
        return results.generation_response(body, generation, send_images=body.send_images)

    @api.post("/txt2img")
    async def txt2img(body: models.Txt2ImgRequest, request: Request):
        return await generate(body, request, "txt2img", hires=hires_settings(body))

    @api.post("/img2img")
    async def img2img(body: models.Img2ImgRequest, request: Request):
        # decoding pictures of up to 64 MiB takes a while: not on the event loop
        settings, warnings = await asyncio.to_thread(img2img_settings, body)
        return await generate(body, request, "img2img", img2img=settings, warnings=warnings)

    @api.get("/upscalers")
    def upscalers():
        return results.upscaler_list()

    @api.get("/latent-upscale-modes")
    def latent_upscale_modes():
        return results.latent_upscale_mode_list()

    # -- progress and control ----------------------------------------------------------------
    newest_image = {"key": None, "image": None}  # clients poll faster than steps end

    @api.get("/progress")
    def progress(skip_current_image: bool = Query(False)):
        state = service.jobs.snapshot()
        image = None
        if not skip_current_image and state.job:
            key = (state.job_id, id(state.latents), id(state.preview), state.job_no, state.sampling_step)
            if newest_image["key"] != key:
                picture = service.current_image()
                newest_image.update(key=key, image=results.encode_png(picture) if picture is not None else None)
            image = newest_image["image"]
        return results.progress_response(state, image, time.time())

    @api.post("/interrupt")
    def interrupt():
        return {"interrupted": service.jobs.interrupt()}

    @api.post("/skip")
    def skip():
        return {"skipped": service.jobs.skip()}

    # -- hypernetworks ---------------------------------------------------------------------------
    @api.get("/hypernetworks")
    def hypernetworks():
        return [{"name": service.library.tag_name(entry), "path": str(entry.path)} for entry in service.library.entries()]

    @api.post("/refresh-hypernetworks")
    def refresh_hypernetworks():
        service.library.refresh()
        return {"count": len(service.library.entries())}

    @api.post("/create/hypernetwork")
    def create_hypernetwork(body: models.CreateHypernetworkRequest):
        form = CreateForm(
            name=body.name, sizes=tuple(_integers("enable_sizes", body.enable_sizes)),
            layer_structure=tuple(_numbers("layer_structure", body.layer_structure or "1, 2, 1")),
            activation=body.activation_func or "linear", weight_init=body.weight_init,
            layer_norm=body.add_layer_norm, use_dropout=body.use_dropout,
            dropout_structure=tuple(_numbers("dropout_structure", body.dropout_structure or "0, 0, 0")),
            activate_output=body.activate_output, optional_info=body.optional_info, overwrite=body.overwrite_old,
            file_format=body.format, seed=body.seed)
        path = create(service, form)
        return {"info": f"create hypernetwork filename: {path}"}

    @api.post("/train/hypernetwork")
    async def train_hypernetwork(body: models.TrainHypernetworkRequest, request: Request):
        job = train(service, body.hypernetwork_name, results.training_config(body))
        result = await wait_for(job, request)
        return {"info": results.training_info(result)}

    # -- options and models ----------------------------------------------------------------------
    @api.get("/options")
    def get_options():
        return service.options.all()

    @api.post("/options")
    async def set_options(body: dict, request: Request):
        ignored, job = service.set_options(body)
        if job is not None:
            await wait_for(job, request)
        return {"ignored": ignored} if ignored else None

    @api.get("/sd-models")
    def sd_models():
        return [results.checkpoint_entry(service, checkpoint) for checkpoint in service.checkpoints.list()]

    @api.post("/refresh-checkpoints")
    def refresh_checkpoints():
        return {"count": len(service.checkpoints.list())}

    @api.get("/samplers")
    def samplers():
        return results.sampler_list()

    @api.get("/schedulers")
    def schedulers():
        return results.scheduler_list()

    @api.post("/png-info")
    def png_info(body: models.PngInfoRequest):
        return results.png_info(body.image)

    @api.get("/loras")
    def loras():
        return results.lora_list(service.paths.lora_dir)

    @api.post("/refresh-loras")
    def refresh_loras():
        return {"count": len(results.lora_list(service.paths.lora_dir))}

    @api.get("/embeddings")
    def embeddings():
        return results.embedding_list(service)

    @api.post("/refresh-embeddings")
    def refresh_embeddings():
        if service._generator is not None:
            service._generator.reload_embeddings()
        return results.embedding_list(service)

    @api.get("/memory")
    def memory():
        return results.memory_report()

    return api


def _integers(field: str, values) -> list[int]:
    return _parsed(field, values, int, "a whole number", "write them like [768, 320]")


def _numbers(field: str, value) -> list[float]:
    items = value if isinstance(value, list) else [part for part in str(value).split(",") if part.strip()]
    return _parsed(field, items, float, "a number", "write it like '1, 2, 1'")


def _parsed(field: str, items, kind, noun: str, example: str) -> list:
    """Each item as `kind`, or an error naming the field, the item's position and value."""
    out = []
    for position, item in enumerate(items, 1):
        try:
            value = kind(item)
            if not math.isfinite(value):
                raise ValueError(item)
        except (TypeError, ValueError, OverflowError):
            raise HypernetError(f"{field} item {position} ({item!r}) is not {noun}; {example}") from None
        out.append(value)
    if not out:
        raise HypernetError(f"{field} holds no values; {example}")
    return out
