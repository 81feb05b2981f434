"""The pixel-space half of img2img and inpainting, behaving as the AUTOMATIC1111 webui's
img2img tab does (re-derived from what it does, not from its code). PIL and numpy only;
the latent half (noise, the latent mask applied each step) belongs to the sampling loop.

How the webui strings these together, and so how a caller should:

Whole picture (webui "Inpaint area: Whole picture"; plain img2img is the first line alone)::

    image = resize_image(init_image, width, height, mode)
    mask = prepare_mask(mask_image, width, height, blur, invert, resize_mode=mode)
    source = fill_masked(image, mask)            # only for "masked content: fill"
    latent = latent_mask(mask, width // 8, height // 8)
    ... sample from `source` ...
    result = apply_overlay(generated, image, overlay_mask(mask))

Only masked (webui "Inpaint area: Only masked", padding default 32)::

    original = resize_image(init_image, *init_image.size, "just resize")  # RGB, unscaled
    mask = prepare_mask(mask_image, *original.size, blur, invert)
    region = masked_region(mask, padding, width, height)
    image, region_mask = crop_for_inpaint(original, mask, region, width, height)
    source = fill_masked(image, region_mask)     # only for "masked content: fill"
    latent = latent_mask(region_mask, width // 8, height // 8)
    ... sample from `source` ...
    result = paste_back(original, generated, region, mask)

Masks are "L" images: 255 is repainted, 0 is kept.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .errors import HypernetError

BACKGROUND = (255, 255, 255)  # the webui's default img2img background for transparent pictures
MASK_THRESHOLD = 128  # alpha-channel masks: above this is masked (the webui's mask rounding)
FILL_PASSES = ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1))  # (blur radius, repeats), coarse to fine


# --- checks -------------------------------------------------------------------------------

def _image(value, name: str) -> Image.Image:
    if not isinstance(value, Image.Image):
        raise HypernetError(f"{name} must be a PIL image (got {type(value).__name__})")
    if value.width < 1 or value.height < 1:
        raise HypernetError(f"{name} must be at least 1 x 1 pixels (got {value.width} x {value.height})")
    return value


def _size(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise HypernetError(f"{name} must be a whole number of pixels, at least 1 (got {value!r})")
    return int(value)


def _mask(value, name: str, size: tuple[int, int] | None = None) -> Image.Image:
    _image(value, name)
    if value.mode != "L":
        raise HypernetError(f"{name} must be an 'L' mask as prepare_mask returns (got mode {value.mode!r})")
    if size is not None and value.size != tuple(size):
        raise HypernetError(f"{name} must be {size[0]} x {size[1]} like the picture (got {value.width} x {value.height})")
    return value


def _rgb(image: Image.Image) -> Image.Image:
    """Transparent pictures are laid on white first, as the webui flattens init images."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        flat.alpha_composite(rgba)
        return flat.convert("RGB")
    return image.convert("RGB") if image.mode != "RGB" else image


def _region(region, name: str, size: tuple[int, int]) -> tuple[int, int, int, int]:
    try:
        x1, y1, x2, y2 = (int(v) for v in region)
    except (TypeError, ValueError):
        raise HypernetError(f"{name} must be four whole numbers (x1, y1, x2, y2) (got {region!r})") from None
    if not (0 <= x1 < x2 <= size[0] and 0 <= y1 < y2 <= size[1]):
        raise HypernetError(f"{name} {(x1, y1, x2, y2)} must be a non-empty box inside the {size[0]} x {size[1]} "
                            "picture, as masked_region returns")
    return x1, y1, x2, y2


# --- 1. resize modes ----------------------------------------------------------------------

def _just_resize(image: Image.Image, width: int, height: int) -> Image.Image:
    """Webui "Just resize": stretched to the target, aspect ratio ignored (Lanczos)."""
    return image.resize((width, height), Image.LANCZOS)


def _crop_and_resize(image: Image.Image, width: int, height: int) -> Image.Image:
    """Webui "Crop and resize": scaled until it covers the target, the overhang cut off
    equally on both sides, so the centre stays."""
    if width * image.height > height * image.width:  # target is wider: match widths
        scaled = (width, max(1, image.height * width // image.width))
    else:
        scaled = (max(1, image.width * height // image.height), height)
    left, top = scaled[0] // 2 - width // 2, scaled[1] // 2 - height // 2
    return image.resize(scaled, Image.LANCZOS).crop((left, top, left + width, top + height))


def _resize_and_fill(image: Image.Image, width: int, height: int) -> Image.Image:
    """Webui "Resize and fill": scaled until it fits, centred, and the empty bands filled
    by stretching the picture's outermost rows (or columns) outward. The webui samples a
    zero-height box at the edge, which mixes in a row or two next to it; here it is the
    edge row itself. The webui can also leave the last row/column of an odd band black;
    here the bands always reach the border."""
    if width * image.height < height * image.width:  # picture is wider: match widths
        scaled = (width, max(1, image.height * width // image.width))
    else:
        scaled = (max(1, image.width * height // image.height), height)
    pixels = np.asarray(image.resize(scaled, Image.LANCZOS))
    top, left = height // 2 - scaled[1] // 2, width // 2 - scaled[0] // 2
    pad = [(top, height - scaled[1] - top), (left, width - scaled[0] - left)] + [(0, 0)] * (pixels.ndim - 2)
    return Image.fromarray(np.pad(pixels, pad, mode="edge"), image.mode)


RESIZE_MODES = {"just resize": _just_resize, "crop and resize": _crop_and_resize, "resize and fill": _resize_and_fill}
RESIZE_CODES = {0: "just resize", 1: "crop and resize", 2: "resize and fill"}  # the webui API's resize_mode


def _resize_mode(mode):
    name = RESIZE_CODES.get(mode) if isinstance(mode, (int, np.integer)) and not isinstance(mode, bool) else mode
    if isinstance(name, str) and name.strip().lower() in RESIZE_MODES:
        return RESIZE_MODES[name.strip().lower()]
    valid = ", ".join(f"{name!r} ({code})" for code, name in RESIZE_CODES.items())
    raise HypernetError(f"resize mode {mode!r} is not known: use one of {valid}")


def _resize(image: Image.Image, width: int, height: int, mode) -> Image.Image:
    return _resize_mode(mode)(image, width, height)


def resize_image(image: Image.Image, width: int, height: int, mode="just resize") -> Image.Image:
    """The init picture at exactly width x height, RGB, by the webui's resize mode (a name
    from RESIZE_MODES or its integer code 0/1/2). The webui's "Just resize (latent
    upscale)" (3) is not here: it leaves the picture alone and scales latents instead."""
    _image(image, "image")
    width, height = _size(width, "width"), _size(height, "height")
    return _resize(_rgb(image), width, height, mode)


# --- 2. masks -----------------------------------------------------------------------------

def _gaussian_kernel(sigma: float) -> np.ndarray:
    """The kernel OpenCV builds for a sigma (the webui blurs masks with cv2.GaussianBlur):
    2 * int(2.5 * sigma + 0.5) + 1 taps."""
    half = int(2.5 * sigma + 0.5)
    taps = np.exp(-(np.arange(-half, half + 1, dtype=np.float64) ** 2) / (2 * sigma * sigma))
    return taps / taps.sum()


def _blur_axis(values: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    """The kernel run along one axis (by FFT: wide blurs have hundreds of taps)."""
    if sigma <= 0:
        return values
    kernel = _gaussian_kernel(sigma)
    half = len(kernel) // 2
    rows = np.moveaxis(values, axis, 0)
    padded = np.pad(rows, [(half, half)] + [(0, 0)] * (rows.ndim - 1), mode="reflect")  # OpenCV's reflect-101
    size = len(padded) + len(kernel) - 1
    spectrum = np.fft.rfft(padded, size, axis=0) * np.fft.rfft(kernel, size).reshape((-1,) + (1,) * (rows.ndim - 1))
    full = np.fft.irfft(spectrum, size, axis=0)
    return np.moveaxis(full[2 * half:2 * half + len(rows)], 0, axis)


def _blur_amounts(blur) -> tuple[float, float]:
    amounts = blur if isinstance(blur, (tuple, list)) else (blur, blur)
    ok = len(amounts) == 2 and all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
                                   and np.isfinite(v) and v >= 0 for v in amounts)
    if not ok:
        raise HypernetError(f"mask blur must be a number of pixels of at least 0, or an (x, y) pair of them "
                            f"(got {blur!r})")
    return float(amounts[0]), float(amounts[1])


def prepare_mask(mask: Image.Image, width: int, height: int, blur=4, invert: bool = False,
                 resize_mode="just resize") -> Image.Image:
    """The inpainting mask as the webui prepares it: an "L" image at width x height.

    Which pixels are masked: an image with an alpha channel that is not fully opaque is
    masked where the alpha is above 128 (the webui's rule for uploaded RGBA masks, where
    the painted strokes are the opaque part); any other image is converted to greyscale
    as it is, grey levels kept (white is masked). Then, in the webui's order: inverted
    if asked ("Inpaint not masked"), blurred with "mask blur" as the Gaussian's sigma
    (an (x, y) pair blurs the two directions differently; OpenCV's kernel size), and
    resized with the same resize mode as the picture (for "only masked", pass the init
    picture's own size: it is not resized)."""
    _image(mask, "mask")
    width, height = _size(width, "width"), _size(height, "height")
    blur_x, blur_y = _blur_amounts(blur)
    _resize_mode(resize_mode)
    if "A" in mask.getbands() and mask.getchannel("A").getextrema() != (255, 255):
        values = np.where(np.asarray(mask.getchannel("A")) > MASK_THRESHOLD, 255, 0).astype(np.uint8)
    else:
        values = np.asarray(mask.convert("L"))
    if invert:
        values = 255 - values
    if blur_x > 0 or blur_y > 0:
        blurred = _blur_axis(_blur_axis(values.astype(np.float64), blur_x, axis=1), blur_y, axis=0)
        values = np.clip(np.rint(blurred), 0, 255).astype(np.uint8)
    return _resize(Image.fromarray(values, "L"), width, height, resize_mode)


def overlay_mask(mask_L: Image.Image) -> Image.Image:
    """The mask the webui lays the original back with in "whole picture" mode: the blurred
    mask doubled and clipped, so the generated picture shows fully wherever the blurred
    mask is at least half on, and the blur only feathers its outer half. ("Only masked"
    lays back with the blurred mask itself.)"""
    _mask(mask_L, "mask_L")
    doubled = np.clip(np.asarray(mask_L).astype(np.int32) * 2, 0, 255).astype(np.uint8)
    return Image.fromarray(doubled, "L")


def latent_mask(mask_L: Image.Image, latent_width: int, latent_height: int, rounded: bool = True) -> np.ndarray:
    """The (latent_height, latent_width) float32 mask for the sampling loop, 1 where new
    latents are made: the webui shrinks the blurred mask to the latent size with Pillow's
    default filter (bicubic), scales it to 0..1 and rounds it to 0/1 (its "mask round";
    soft inpainting turns rounding off: `rounded=False`)."""
    _mask(mask_L, "mask_L")
    size = (_size(latent_width, "latent_width"), _size(latent_height, "latent_height"))
    values = np.asarray(mask_L.resize(size, Image.BICUBIC), dtype=np.float32) / 255.0
    return np.around(values).astype(np.float32) if rounded else values


# --- 3. only masked -----------------------------------------------------------------------

def _grow_to(low: int, high: int, wanted: float, limit: int) -> tuple[int, int]:
    """One side of the webui's expand_crop_region: grow [low, high) to about `wanted`,
    half each way, then slide it back inside [0, limit) and cut what still sticks out."""
    extra = int(wanted - (high - low))
    low, high = low - extra // 2, high + extra - extra // 2
    if high > limit:
        low, high = low - (high - limit), limit
    if low < 0:
        low, high = 0, high - low
    return low, min(high, limit)


def masked_region(mask_L: Image.Image, padding: int, width: int, height: int) -> tuple[int, int, int, int]:
    """The (x1, y1, x2, y2) box, x2/y2 exclusive, that "only masked" inpaints: the box
    around every non-zero pixel of the (blurred) mask, grown by `padding` pixels on each
    side ("only masked padding") and cut at the picture's border, then grown in its short
    direction towards the width:height aspect of the generated picture, slid back inside
    the picture and cut where it still does not fit (as the webui's expand_crop_region;
    crop_for_inpaint's resize-and-fill absorbs what remains)."""
    _mask(mask_L, "mask_L")
    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise HypernetError(f"padding must be a whole number of pixels, at least 0 (got {padding!r})")
    width, height = _size(width, "width"), _size(height, "height")
    box = mask_L.getbbox()
    if box is None:
        raise HypernetError("the mask is empty: nothing to inpaint (paint the area to change, or use the whole picture)")
    x1, y1 = max(box[0] - padding, 0), max(box[1] - padding, 0)
    x2, y2 = min(box[2] + padding, mask_L.width), min(box[3] + padding, mask_L.height)
    if (x2 - x1) * height > (y2 - y1) * width:  # wider than the target aspect: grow the height
        y1, y2 = _grow_to(y1, y2, (x2 - x1) * height / width, mask_L.height)
    else:
        x1, x2 = _grow_to(x1, x2, (y2 - y1) * width / height, mask_L.width)
    return int(x1), int(y1), int(x2), int(y2)


def crop_for_inpaint(image: Image.Image, mask: Image.Image, region, width: int,
                     height: int) -> tuple[Image.Image, Image.Image]:
    """(picture, mask) cut to the region and brought to width x height with "resize and
    fill", as the webui does for "only masked": RGB and "L"."""
    _image(image, "image")
    _mask(mask, "mask", image.size)
    x1, y1, x2, y2 = _region(region, "region", image.size)
    width, height = _size(width, "width"), _size(height, "height")
    picture = _resize_and_fill(_rgb(image).crop((x1, y1, x2, y2)), width, height)
    return picture, _resize_and_fill(mask.crop((x1, y1, x2, y2)), width, height)


def paste_back(original: Image.Image, generated: Image.Image, region, mask_L: Image.Image) -> Image.Image:
    """The full-size result of "only masked": the generated picture brought back to the
    region's size with "crop and resize" (undoing crop_for_inpaint's resize-and-fill),
    put into a copy of the original at the region, and the original laid back over it
    outside the blurred full-size mask (apply_overlay). The webui puts the crop on a
    transparent canvas instead, which darkens any blur that reaches past the region;
    here the original is under it. RGB."""
    _image(original, "original")
    _image(generated, "generated")
    _mask(mask_L, "mask_L", original.size)
    x1, y1, x2, y2 = _region(region, "region", original.size)
    base = _rgb(original).copy()
    base.paste(_crop_and_resize(_rgb(generated), x2 - x1, y2 - y1), (x1, y1))
    return apply_overlay(base, original, mask_L)


# --- 4. masked content: fill --------------------------------------------------------------

def _box_blur(values: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """Mean over 2 * radius + 1 pixels along one axis, the border pixel repeated outward."""
    rows = np.moveaxis(values, axis, 0)
    sums = np.cumsum(np.pad(rows, [(radius + 1, radius)] + [(0, 0)] * (rows.ndim - 1), mode="edge"), axis=0)
    size = 2 * radius + 1
    return np.moveaxis((sums[size:size + len(rows)] - sums[:len(rows)]) / size, 0, axis)


def _gaussian_like(values: np.ndarray, sigma: float) -> np.ndarray:
    """Three box blurs per axis approximate a Gaussian of this sigma (as Pillow's
    GaussianBlur does), in linear time whatever the radius."""
    if sigma <= 0:
        return values
    radius = max(1, int(round((np.sqrt(12 * sigma * sigma / 3 + 1) - 1) / 2)))
    for axis in (0, 1):
        for _ in range(3):
            values = _box_blur(values, radius, axis)
    return values


def fill_masked(image: Image.Image, mask_L: Image.Image) -> Image.Image:
    """The webui's "masked content: fill": the masked area painted with the colours around
    it before sampling starts. The kept pixels (weighted by how unmasked they are) are
    blurred with shrinking radii; each blur, normalised by how much kept picture reached
    each pixel, is laid over the previous one with that amount as its opacity, so far
    inside a hole the wide blurs' average colour shows and near its edge the fine blurs'
    local colour does. Pixels with mask 0 come out unchanged. RGB."""
    _image(image, "image")
    _mask(mask_L, "mask_L", image.size)
    colours = np.asarray(_rgb(image), dtype=np.float64)
    kept = 1.0 - np.asarray(mask_L, dtype=np.float64)[..., None] / 255.0
    layer = np.concatenate([colours * kept, kept], axis=-1)  # premultiplied colour and opacity
    result = np.zeros_like(layer)
    for radius, repeats in FILL_PASSES:
        blurred = _gaussian_like(layer, radius)
        for _ in range(repeats):
            result = blurred + result * (1.0 - blurred[..., 3:])  # "over", premultiplied
    opacity = result[..., 3:]
    filled = np.where(opacity > 1e-12, result[..., :3] / np.maximum(opacity, 1e-12), 0.0)
    filled = np.clip(np.rint(filled), 0, 255).astype(np.uint8)
    untouched = np.asarray(mask_L) == 0
    filled[untouched] = np.asarray(_rgb(image))[untouched]
    return Image.fromarray(filled, "RGB")


# --- 5. overlay ---------------------------------------------------------------------------

def apply_overlay(generated: Image.Image, original: Image.Image, mask_L: Image.Image) -> Image.Image:
    """The webui's last step for img2img with a mask: the original picture laid back over
    the generated one with the mask as the generated picture's opacity, so pixels where
    the mask is 0 are exactly the original's and the blurred edge blends the two. Same
    sizes in; RGB out (whole picture: pass overlay_mask(mask); only masked: paste_back)."""
    _image(generated, "generated")
    _image(original, "original")
    if generated.size != original.size:
        raise HypernetError(f"generated must be {original.width} x {original.height} like original "
                            f"(got {generated.width} x {generated.height})")
    _mask(mask_L, "mask_L", original.size)
    before = np.asarray(_rgb(original), dtype=np.float64)
    after = np.asarray(_rgb(generated), dtype=np.float64)
    amount = np.asarray(mask_L, dtype=np.float64)[..., None] / 255.0
    blended = np.clip(np.rint(before * (1.0 - amount) + after * amount), 0, 255).astype(np.uint8)
    return Image.fromarray(blended, "RGB")
