"""`hypernet img2img`: restyle a picture (and, with --mask, inpaint part of it) with
`<hypernet:NAME:M>` tags in the prompt, as the webui's img2img tab does."""

from __future__ import annotations

from ..errors import HypernetError
from .generate import add_model_arguments, add_sampling_arguments, generate_and_write


def register(sub) -> None:
    from ..img2img_images import RESIZE_MODES
    from ..request import MASKED_CONTENT

    parser = sub.add_parser("img2img", help="img2img and inpainting", description=__doc__)
    parser.add_argument("image", help="init picture (PNG, JPEG, WebP)")
    parser.add_argument("prompt", help="prompt; <hypernet:NAME:MULTIPLIER> tags pick hypernetworks")
    add_sampling_arguments(parser, out="outputs/img2img")
    parser.add_argument("--denoise", type=float, default=0.75, help="denoising strength, 0 (keep) to 1 (ignore the picture); default 0.75")
    parser.add_argument("--resize-mode", default="just resize", choices=list(RESIZE_MODES),
                        help="when --size differs from the picture's (default: just resize)")
    parser.add_argument("--mask", default=None, metavar="FILE", help="inpaint: white (or opaque) = repaint")
    parser.add_argument("--mask-blur", type=int, default=4, help="mask blur in pixels (default 4)")
    parser.add_argument("--invert-mask", action="store_true", help="repaint what is not masked")
    parser.add_argument("--masked-content", default="original", choices=list(MASKED_CONTENT),
                        help="what the masked area starts from (default original)")
    parser.add_argument("--only-masked", action="store_true",
                        help="work on the masked area only, at --size, and paste it back (webui: Inpaint area: Only masked)")
    parser.add_argument("--padding", type=int, default=32, help="only-masked padding in pixels (default 32)")
    parser.add_argument("--seed", type=int, default=-1, help="seed (default -1: random)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--batch-count", type=int, default=1)
    add_model_arguments(parser)
    parser.set_defaults(func=run)


def read_picture(path: str, what: str):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as picture:
            picture.load()
            return picture.copy()
    except FileNotFoundError:
        raise HypernetError(f"{path}: {what} not found") from None
    except (UnidentifiedImageError, OSError) as error:
        raise HypernetError(f"{path}: cannot read the {what} as a picture ({error})") from None


def run(args) -> int:
    from ..request import Img2Img, Request

    image = read_picture(args.image, "init picture")
    mask = read_picture(args.mask, "mask") if args.mask else None
    width, height = args.size or (image.width // 8 * 8, image.height // 8 * 8)
    settings = Img2Img(image, denoising_strength=args.denoise, resize_mode=args.resize_mode, mask=mask,
                       mask_blur=args.mask_blur, masked_content=args.masked_content, only_masked=args.only_masked,
                       only_masked_padding=args.padding, invert_mask=args.invert_mask)
    if settings.problems():  # before the model loads
        raise HypernetError("; ".join(settings.problems()))
    request = Request(prompt=args.prompt, negative_prompt=args.negative, steps=args.steps, cfg_scale=args.cfg,
                      seed=args.seed, width=width, height=height, sampler=args.sampler, schedule=args.schedule,
                      batch_size=args.batch_size, batch_count=args.batch_count, img2img=settings)
    return generate_and_write(args, [request])
