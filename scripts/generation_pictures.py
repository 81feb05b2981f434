"""The pictures in docs/generation.md for img2img, inpainting, the hires fix, AND and
per-image hypernetworks in one batch, made with the embedded toy model (offline, ~1 min).

    python scripts/generation_pictures.py [docs/images]
"""

import sys
from pathlib import Path

from PIL import Image

from hypernet.cli.defaults import toy_model_loader
from hypernet.grid import labelled_grid
from hypernet.loading import load_generator
from hypernet.request import HiresFix, Img2Img, Request

INIT = "a red circle on a blue background"


def one(generator, prompt: str, **settings):
    return generator.generate(Request(prompt, seed=settings.pop("seed", 3), steps=20, **settings), progress=False)[0].image


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images")
    generator = load_generator(None, hypernet_dir="models/hypernetworks", progress=False,
                               default_model=toy_model_loader())
    init = one(generator, INIT)
    restyled = [one(generator, f"a green square on a white background <hypernet:water:0.6>",
                    img2img=Img2Img(init, denoising_strength=strength)) for strength in (0.3, 0.6, 0.9)]
    labelled_grid([[init, *restyled]], ["img2img"], ["init", "denoise 0.3", "0.6", "0.9"],
                  title="hypernet img2img init.png \"a green square on a white background <hypernet:water:0.6>\"") \
        .save(folder / "img2img.png")

    mask = Image.new("L", init.size, 0)
    mask.paste(255, (0, 0, init.width // 2, init.height))
    inpainted = [one(generator, f"a yellow triangle on a gray background <hypernet:neon:{m}>",
                     img2img=Img2Img(init, denoising_strength=0.9, mask=mask, mask_blur=2)) for m in (0, 1)]
    labelled_grid([[init, mask.convert("RGB"), *inpainted]], ["inpaint"], ["init", "mask", "neon: 0", "neon: 1"],
                  title="hypernet img2img init.png \"... <hypernet:neon:1>\" --mask mask.png --denoise 0.9") \
        .save(folder / "inpaint.png")

    small = one(generator, f"{INIT} <hypernet:water:0.5>")
    hires = one(generator, f"{INIT} <hypernet:water:0.5>", hires=HiresFix(scale=2, denoising_strength=0.5))
    labelled_grid([[small.resize(hires.size, Image.NEAREST), hires]], ["hires fix"], ["64x64 first pass", "128x128 --hires 2"],
                  title="hypernet generate \"... <hypernet:water:0.5>\" --hires 2 --hires-denoise 0.5") \
        .save(folder / "hires.png")

    parts = [one(generator, prompt) for prompt in ("a red circle on a blue background", "a green square on a white background",
                                                   "a red circle on a blue background AND a green square on a white background",
                                                   "a red circle on a blue background AND a green square on a white background:0.4")]
    labelled_grid([parts], ["AND"], ["A", "B", "A AND B", "A AND B:0.4"], title="composable diffusion (AND)") \
        .save(folder / "and.png")

    prompts = [INIT, f"{INIT} <hypernet:water:1>", f"{INIT} <hypernet:neon:1>",
               f"{INIT} <hypernet:water:0.6> <hypernet:neon:0.6>"]
    together = generator.generate_together([Request(p, seed=3, steps=20) for p in prompts], progress=False)
    labelled_grid([[results[0].image for results in together]], ["one batch"],
                  ["none", "water", "neon", "water + neon"],
                  title="four requests, four hypernetwork chains, one UNet batch") \
        .save(folder / "batch_chains.png")
    print(f"pictures written to {folder}")


if __name__ == "__main__":
    main()
