"""What `hypernet serve` does, whichever face asks: the HTTP API and the web UI both call
this object. It owns the job queue, the options and the library; the worker thread owns
the loaded model. Requests are checked here, in the caller's thread, before they queue,
so a bad name or value fails at once and never costs a place in the queue.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import HypernetError
from ..generation import Generator, Request, Result, batch_key
from ..memory import MemoryLimit
from .checkpoints import Checkpoint, Checkpoints
from .jobs import Job, JobContext, Jobs, Together
from .options import Options


@dataclass
class ServerPaths:
    hypernet_dir: Path = Path("models/hypernetworks")
    checkpoint_dir: Path = Path("models/Stable-diffusion")
    lora_dir: Path = Path("models/Lora")
    embeddings_dir: Path = Path("models/embeddings")
    outputs_dir: Path = Path("outputs")
    training_dir: Path = Path("training")

    def __post_init__(self):
        for name in ("hypernet_dir", "checkpoint_dir", "lora_dir", "embeddings_dir", "outputs_dir", "training_dir"):
            setattr(self, name, Path(getattr(self, name)))


@dataclass
class Limits:
    """Bounds on one request, so one client cannot take the machine (documented in docs/api.md)."""

    max_side: int = 2048
    max_batch_size: int = 16
    max_batch_count: int = 100
    max_batch_pixels: int = 16 * 512 * 512
    max_steps: int = 150
    memory: MemoryLimit = field(default_factory=MemoryLimit)  # what one request may need (docs/generation.md)

    def check(self, request: Request) -> None:
        problems = []
        if request.steps > self.max_steps:
            problems.append(f"steps {request.steps} is more than the server allows ({self.max_steps})")
        if request.batch_count > self.max_batch_count:
            problems.append(f"n_iter {request.batch_count} is more than the server allows ({self.max_batch_count})")
        problems += self.batch_problems(request.batch_size, request.width, request.height)
        if request.hires is not None and not request.hires.problems():
            width, height = request.hires.target(request.width or 512, request.height or 512, 8)
            problems += self.batch_problems(request.batch_size, width, height,
                                            names=("batch_size", "hires width", "hires height"))
        if problems:
            raise HypernetError("; ".join(problems))

    def batch_problems(self, batch_size: int, width: int | None, height: int | None,
                       names=("batch_size", "width", "height"), more: str = "n_iter") -> list[str]:
        """What is over the bounds for one batch of pictures (generated or trained on)."""
        problems = []
        if batch_size > self.max_batch_size:
            problems.append(f"{names[0]} {batch_size} is more than the server allows ({self.max_batch_size})")
        for label, value in ((names[1], width), (names[2], height)):
            if value is not None and value > self.max_side:
                problems.append(f"{label} {value} is more than the server allows ({self.max_side})")
        pixels = (width or 512) * (height or 512) * batch_size
        if pixels > self.max_batch_pixels:
            problems.append(f"{' x '.join(names)} = {pixels} pixels is more than the server allows "
                            f"({self.max_batch_pixels}); lower them, or raise {more} instead")
        return problems


@dataclass
class Generation:
    """A finished generation job: the results, and what the caller should hear about."""

    results: list[Result]
    request: Request
    warnings: list[str] = field(default_factory=list)
    interrupted: bool = False
    saved: list[Path] = field(default_factory=list)
    model: str = ""
    model_hash: str | None = None
    inpainting_model: bool = False  # the UNet took the mask and masked picture as input


@dataclass
class _Shared:
    """A txt2img job that may share a batch: what `_run_together` needs of it (`run`
    runs it alone)."""

    request: Request
    model: Checkpoint
    save_images: bool
    folder: Path
    warnings: list[str]
    run: Callable[[JobContext], Generation]


class UnsafeNameError(HypernetError):
    """A name in a request that would reach outside the library folders."""


class Service:
    def __init__(self, paths: ServerPaths | None = None, model=None, queue_size: int = 16,
                 load_generator: Callable[..., Generator] | None = None, limits: Limits | None = None,
                 device=None, batch_requests: int = 1):
        from ..loading import open_library

        self.paths = paths or ServerPaths()
        self.paths.hypernet_dir.mkdir(parents=True, exist_ok=True)
        self.limits = limits or Limits()
        # batch_requests > 1: waiting txt2img requests that can share a UNet batch run as one
        self.jobs = Jobs(queue_size, max_together=batch_requests, run_together=self._run_together)
        self.library = open_library(self.paths.hypernet_dir)
        self.checkpoints = Checkpoints(self.paths.checkpoint_dir, default=model)
        self.options = Options(sd_model_checkpoint=self.checkpoints.default.title,
                               outdir_txt2img_samples=str(self.paths.outputs_dir / "txt2img-images"),
                               outdir_txt2img_grids=str(self.paths.outputs_dir / "txt2img-grids"),
                               outdir_img2img_samples=str(self.paths.outputs_dir / "img2img-images"))
        self._load_generator = load_generator
        self._device = device
        self._generator: Generator | None = None
        self._loaded: Checkpoint | None = None
        self.preview = None  # LatentPreview of the loaded model
        self.create_lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, preload: bool = True) -> None:
        self.jobs.start()
        if preload:
            self.jobs.submit("load-model", lambda context: self._ensure_model(self.checkpoints.default, context))

    def stop(self, timeout_seconds: float = 120.0) -> None:
        self.jobs.stop(timeout_seconds)
        if self._generator is not None:
            self._generator.close()

    # -- the model (worker thread only) -------------------------------------------------------
    def _ensure_model(self, checkpoint: Checkpoint, context: JobContext | None = None) -> Generator:
        if self._generator is not None and self._loaded == checkpoint:
            return self._generator
        from ..loading import load_generator
        from .preview import LatentPreview

        if context is not None:
            context.update(textinfo=f"loading {checkpoint.title}")
        if self._generator is not None:
            self._generator.close()
            self._generator = None
        from ..cli.defaults import toy_model_loader

        loader = self._load_generator or load_generator
        generator = loader(checkpoint.path, hypernet_dir=self.paths.hypernet_dir, device=self._device, progress=False,
                           lora_dir=self.paths.lora_dir, embeddings_dir=self.paths.embeddings_dir,
                           default_model=toy_model_loader())
        generator.library = self.library
        self.preview = LatentPreview.fit(generator.pipe.vae)
        self._generator, self._loaded = generator, checkpoint
        return generator

    @property
    def loaded_model(self) -> Checkpoint | None:
        return self._loaded

    def load_model(self, name: str) -> Job:
        """Queue a switch to checkpoint `name` (title, file name or stem); checked now."""
        checkpoint = self.checkpoints.resolve(name)

        def run(context: JobContext):
            self._ensure_model(checkpoint, context)
            self.options.update({"sd_model_checkpoint": checkpoint.title})
            return checkpoint

        return self.jobs.submit("load-model", run, interrupt_when_abandoned=False)

    def set_options(self, changes: dict) -> tuple[list[str], Job | None]:
        """Check and apply option changes; a new checkpoint is loaded by a queued job
        (returned). Returns the names ignored (not options that mean anything here)."""
        accepted, ignored = self.options.checked(changes)
        hypernetwork = accepted.get("sd_hypernetwork")
        if hypernetwork not in (None, "None", ""):
            self.resolve_hypernetwork(hypernetwork)
        job = None
        checkpoint = accepted.pop("sd_model_checkpoint", None)
        if checkpoint:
            job = self.load_model(checkpoint)
        self.options.update(accepted)
        return ignored, job

    # -- generation ------------------------------------------------------------------------
    def prepare_prompt(self, prompt: str, hypernetwork: str | None = None, multiplier: float | None = None) -> str:
        """The prompt with the "Add hypernetwork to prompt" option applied (contract §4.2
        item 2: appended without a separator unless already tagged)."""
        from ..prompt import extract_networks

        name = hypernetwork if hypernetwork is not None else self.options.get("sd_hypernetwork")
        if name in (None, "", "None"):
            return prompt
        entry = self.resolve_hypernetwork(name)
        _, tags = extract_networks(prompt)
        if any(kind == "hypernet" and tag_name in (name, entry.name) for kind, tag_name, _ in tags):
            return prompt
        m = multiplier if multiplier is not None else self.options.get("extra_networks_default_multiplier")
        # exactly the webui's text for this option: Python's str of the float ("1.0")
        return f"{prompt}<hypernet:{self.library.tag_name(entry)}:{float(m)}>"

    def check_request(self, request: Request, checkpoint: Checkpoint | None = None) -> None:
        """Everything that can be checked before the job queues: limits, sampler, sizes,
        prompt tags and the hypernetworks they name (unknown names list the closest), and,
        when `checkpoint` (default: the current one) is the loaded model, the memory the
        request needs (the worker checks it again in any case, before sampling)."""
        from ..prompt import extract_networks_pair
        from ..samplers import split_name

        self.limits.check(request)
        split_name(request.sampler, request.schedule)
        probe = Request(**{**request.__dict__, "width": request.width or 512, "height": request.height or 512})
        probe.validated(512, 8)
        generator, loaded = self._generator, self._loaded  # read once: the worker may switch models
        checkpoint = checkpoint or self.checkpoints.resolve(self.options.get("sd_model_checkpoint"))
        if generator is not None and loaded == checkpoint:
            generator.check_memory(request, self.limits.memory)
        _, _, tags = extract_networks_pair(request.prompt, request.negative_prompt)
        loras = None
        for kind, name, _ in tags:
            if kind == "hypernet":
                self.resolve_hypernetwork(name)
            elif kind == "lora":
                from ..extra_networks import LORA_SUFFIXES, _files, _unknown

                loras = _files(self.paths.lora_dir, LORA_SUFFIXES) if loras is None else loras
                if name not in loras:
                    raise _unknown("LoRA", name, list(loras))

    def resolve_hypernetwork(self, name: str):
        """A library entry for a name from a request: never a path outside the library
        folders (no absolute paths, no `..`, no symbolic link leading out)."""
        from pathlib import PurePosixPath

        text = str(name).replace("\\", "/")
        if not text or "\x00" in text or text.startswith("/") or ":" in text[:3] or ".." in PurePosixPath(text).parts:
            raise UnsafeNameError(f"hypernetwork name {name!r} must be a name inside the library folder "
                                  "(no absolute path, no '..'); see GET /sdapi/v1/hypernetworks")
        entry = self.library.resolve(text)
        real = entry.path.resolve()
        if not any(real.is_relative_to(Path(root).resolve()) for root in self.library.roots):
            raise UnsafeNameError(f"hypernetwork {name!r} is a link to {real}, outside the library folders; "
                                  "copy the file into the library instead")
        return entry

    def generate(self, request: Request, kind: str = "txt2img", save_images: bool = False,
                 checkpoint: str | None = None, warnings: list[str] | None = None) -> Job:
        """Queue a generation (`kind` txt2img or img2img: the request's `img2img` settings
        say which); the job's result is a `Generation`."""
        model = self.checkpoints.resolve(checkpoint or self.options.get("sd_model_checkpoint"))
        self.check_request(request, model)
        live_previews = bool(self.options.get("live_previews_enable"))
        folder = Path(self.options.get(f"outdir_{'img2img' if request.img2img is not None else 'txt2img'}_samples"))

        def run(context: JobContext) -> Generation:
            generator = self._ensure_model(model, context)
            context.update(job=kind, job_count=request.batch_count, sampling_steps=request.steps, textinfo=None)

            def on_step(info):
                context.update(job_no=info.batch, sampling_step=info.step, sampling_steps=info.steps,
                               latents=info.latents.detach().float().cpu() if live_previews else None)

            context.control.on_step = on_step
            generator.warnings.clear()
            generator.memory_limit = self.limits.memory
            from ..outputs import ImageWriter

            writer = ImageWriter(folder) if save_images else None  # each image saved as it is decoded
            results = generator.generate(request, progress=False, control=context.control,
                                         on_result=writer.write if writer else None)
            return self._generation(generator, request, results, warnings, context.control.interrupted,
                                    writer.written if writer else [])

        together = None
        if self.jobs.max_together > 1 and kind == "txt2img" and self._may_share_a_batch(request):
            size = (request.width or 512) * (request.height or 512)
            together = Together(key=(model, request.clip_skip, batch_key(request)), images=request.batch_size,
                                max_images=max(1, min(self.limits.max_batch_size, self.limits.max_batch_pixels // size)),
                                payload=_Shared(request, model, save_images, folder, warnings or [], run))
        return self.jobs.submit(kind, run, together=together)

    @staticmethod
    def _may_share_a_batch(request: Request) -> bool:
        """What `Generator.generate_together` takes: txt2img, one batch, no LoRA (it
        changes the whole pipeline)."""
        from ..prompt import extract_networks_pair

        if request.batch_count != 1 or request.img2img is not None or request.hires is not None:
            return False
        _, _, tags = extract_networks_pair(request.prompt, request.negative_prompt)
        return not any(kind == "lora" for kind, _, _ in tags)

    def _run_together(self, jobs: list[Job], context: JobContext) -> list:
        """Waiting txt2img jobs with one `batch_key` as one UNet batch (each image its own
        prompt, seed and hypernetworks); each job's `Generation`, or its error. If the
        batch fails as a whole (memory, NaN), each job runs again on its own, so one
        request's failure is only its own (a broken network file, too little memory for
        the whole batch)."""
        shared = [job.together.payload for job in jobs]
        generator = self._ensure_model(shared[0].model, context)
        steps = shared[0].request.steps
        context.update(job="txt2img", job_count=1, sampling_steps=steps,
                       textinfo=f"{len(jobs)} requests in one batch")
        live_previews = bool(self.options.get("live_previews_enable"))

        def on_step(info):
            if all(job.control.interrupted for job in jobs):  # every client left
                context.control.interrupted = True
            context.update(job_no=0, sampling_step=info.step, sampling_steps=info.steps,
                           latents=info.latents.detach().float().cpu() if live_previews else None)

        context.control.on_step = on_step
        generator.warnings.clear()
        generator.memory_limit = self.limits.memory
        try:
            together = generator.generate_together([item.request for item in shared], progress=False,
                                                   control=context.control)
        except Exception:  # noqa: BLE001 - each job then fails (or not) on its own, answered as alone
            outcomes = []
            for item in shared:
                try:
                    outcomes.append(item.run(context))
                except Exception as error:  # noqa: BLE001 - this job's answer (4xx/5xx by the app)
                    outcomes.append(error)
            return outcomes
        from ..outputs import ImageWriter

        outcomes = []
        for item, results in zip(shared, together):
            saved = []
            if item.save_images:
                writer = ImageWriter(item.folder)
                for result in results:
                    writer.write(result)
                saved = writer.written
            outcomes.append(self._generation(generator, item.request,
                                             results, item.warnings, context.control.interrupted, saved))
        return outcomes

    def txt2img(self, request: Request, save_images: bool = False, checkpoint: str | None = None,
                warnings: list[str] | None = None) -> Job:
        return self.generate(request, "txt2img", save_images=save_images, checkpoint=checkpoint, warnings=warnings)

    @staticmethod
    def _generation(generator, request, results, warnings, interrupted: bool, saved) -> Generation:
        return Generation(results, request, warnings=[*(warnings or []), *generator.warnings], interrupted=interrupted,
                          model=generator.model.name, model_hash=generator.model.hash, saved=list(saved),
                          inpainting_model=generator._inpainting_model and request.img2img is not None)

    def current_image(self):
        """A preview of the running job's newest latents (or training preview), or None."""
        state = self.jobs.snapshot()
        if state.latents is not None and self.preview is not None:
            return self.preview.image(state.latents)
        return state.preview
