"""Generation results on disk and back: numbered PNGs with the webui's infotext, and the
request that reproduces an image from that text."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .fileio import make_folder
from .generation import Request, Result
from .samplers import DEFAULT_SAMPLER


class ImageWriter:
    """Writes results one at a time, as they come, as PNG files `NNNNN-SEED.png` with the
    webui's `parameters` chunk, numbered after the files already in `folder` (never
    overwriting). A long run that is stopped keeps every image finished before."""

    def __init__(self, folder):
        self.folder = make_folder(folder)
        self.written: list[Path] = []
        taken = [int(p.name[:5]) for p in self.folder.glob("[0-9][0-9][0-9][0-9][0-9]-*.png")]
        self._number = max(taken, default=-1) + 1

    def write(self, result: Result) -> Path:
        from .infotext import write_png

        while any(self.folder.glob(f"{self._number:05d}-*.png")):  # another writer took it meanwhile
            self._number += 1
        path = self.folder / f"{self._number:05d}-{result.seed}.png"
        write_png(result.image, path, result.infotext)
        self._number += 1
        self.written.append(path)
        return path


def save_results(results: Sequence[Result], folder) -> list[Path]:
    """Every result as a numbered PNG in `folder` (see `ImageWriter`)."""
    writer = ImageWriter(folder)
    return [writer.write(result) for result in results]


def hires_from_infotext(parameters: dict):
    """The hires-fix settings the webui's infotext fields describe."""
    from .request import HiresFix

    resize = str(parameters.get("Hires resize", "0x0")).split("x")
    sampler = parameters.get("Hires sampler")
    if sampler and parameters.get("Hires schedule type") not in (None, "Automatic"):
        sampler = f"{sampler} {parameters['Hires schedule type']}"
    cfg = parameters.get("Hires CFG Scale")
    return HiresFix(
        scale=float(parameters.get("Hires upscale", 2.0)),
        upscaler=str(parameters.get("Hires upscaler", "Latent")),
        steps=int(parameters.get("Hires steps", 0)),
        denoising_strength=float(parameters.get("Denoising strength", 0.7)),
        resize_width=int(resize[0]) if len(resize) == 2 and resize[0].isdigit() else 0,
        resize_height=int(resize[1]) if len(resize) == 2 and resize[1].isdigit() else 0,
        prompt=str(parameters.get("Hires prompt", "")),
        negative_prompt=str(parameters.get("Hires negative prompt", "")),
        sampler=sampler,
        cfg_scale=None if cfg is None else float(cfg),
    )


def request_from_infotext(text: str, **overrides) -> Request:
    """The request that reproduces an image from its PNG `parameters` text."""
    from .infotext import parse_infotext

    prompt, negative, parameters = parse_infotext(text)
    size = str(parameters.get("Size", "")).split("x")
    values = dict(
        prompt=prompt,
        negative_prompt=negative,
        steps=int(parameters.get("Steps", 20)),
        cfg_scale=float(parameters.get("CFG scale", 7.0)),
        seed=int(parameters.get("Seed", -1)),
        sampler=str(parameters.get("Sampler", DEFAULT_SAMPLER)),
        schedule=parameters.get("Schedule type"),
    )
    if isinstance(parameters.get("Clip skip"), int):
        values["clip_skip"] = parameters["Clip skip"]
    if len(size) == 2 and all(s.isdigit() for s in size):
        values.update(width=int(size[0]), height=int(size[1]))
    if any(key in parameters for key in ("Hires upscale", "Hires resize", "Hires upscaler")):
        values["hires"] = hires_from_infotext(parameters)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Request(**values)
