"""The webui's "infotext": the generation parameters stored in a PNG's `parameters` text
chunk and pasted back into the UI (contract §4.4).

Layout, as stable-diffusion-webui v1.10.1 writes it::

    a cat <hypernet:style:0.7>
    Negative prompt: blurry
    Steps: 20, Sampler: Euler a, CFG scale: 7.0, Seed: 1, Size: 512x512, Model hash: ...

The prompt keeps its tags. The last line is `Key: value` fields joined by ", "; a value
holding a comma, colon, newline or double quote is written as a JSON string. A reader
(the webui's included) treats that last line as parameters only when it holds at least
three fields. Only PIL is needed here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .errors import HypernetError, HypernetFileError
from .fileio import atomic_path

PARAMETERS_KEY = "parameters"  # the PNG text chunk the webui reads

# Fields in the order the webui writes them, with ours (Batch size/pos, Hypernetworks)
# where the webui wrote its batch and hypernetwork fields; other fields follow in the
# caller's order, and these two always come last.
FIELD_ORDER = (
    "Steps",
    "Sampler",
    "Schedule type",
    "CFG scale",
    "Seed",
    "Size",
    "Model hash",
    "Model",
    "Batch size",
    "Batch pos",
    "Clip skip",
    "Hypernetworks",
)
TRAILING_FIELDS = ("Version", "User")

# Fields that are text even when they look like numbers (a hash of only digits, a
# model called "1.5"); parsing never turns these into int or float.
TEXT_FIELDS = frozenset(
    {
        "Sampler", "Schedule type", "Size", "Model hash", "Model", "Hypernetworks", "Version", "User",
        "VAE", "VAE hash", "Hypernet", "Hypernet hash", "Seed resize from", "RNG", "Hires upscaler",
        "Hires sampler", "Hires schedule type", "Hires checkpoint", "Hires prompt", "Hires negative prompt",
        "Hires resize", "Masked content", "Inpaint area", "Mask mode", "Resize mode", "Face restoration", "Lora hashes", "TI hashes",
    }
)

# A field on the parameters line: a key of at least two word/space/-// characters, then a
# JSON string or anything up to the next comma (the same grammar the webui parses).
_FIELD = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_KEY = re.compile(r"\w[\w \-/]+")
_INTEGER = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?")
_SIZE = re.compile(r"(\d+)x(\d+)")
_NEGATIVE_PREFIX = "Negative prompt:"


def quote(text: str) -> str:
    """A value as it goes on the parameters line: JSON-quoted when it could otherwise be
    misread (the webui quotes on `,` `:` newline; a `"` or edge spaces also need it)."""
    if any(mark in text for mark in ',:\n"') or text != text.strip():
        return json.dumps(text, ensure_ascii=False)
    return text


def unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def format_number(value: float) -> str:
    """A multiplier for the Hypernetworks field: `1` for 1.0, `0.7` for 0.7."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def format_hypernetworks(networks) -> str:
    """Our `Hypernetworks` field: `"name: 0.7, other: 1"` from (name, multiplier) pairs
    or a {name: multiplier} mapping, in prompt order."""
    pairs = networks.items() if isinstance(networks, dict) else networks
    return ", ".join(f"{name}: {format_number(multiplier)}" for name, multiplier in pairs)


def parse_hypernetworks(text: str) -> list[tuple[str, float]]:
    """The inverse of `format_hypernetworks`. Names may hold commas but not colons (a
    prompt tag could not name them otherwise)."""
    pairs = []
    for name, multiplier in re.findall(r"\s*([^:]+?):\s*([^,\s]+)\s*(?:,|$)", text):
        try:
            pairs.append((name, float(multiplier)))
        except ValueError:
            raise HypernetError(f"Hypernetworks field {text!r}: multiplier {multiplier!r} of {name!r} is not a number") from None
    return pairs


def parse_size(text: str) -> tuple[int, int]:
    """`"512x768"` -> (512, 768): the Size field is width x height."""
    match = _SIZE.fullmatch(str(text).strip())
    if match is None:
        raise HypernetError(f"Size {text!r} is not WIDTHxHEIGHT, e.g. 512x512")
    return int(match.group(1)), int(match.group(2))


def format_value(key: str, value) -> str:
    """A parameter as text: booleans as the webui writes them, (w, h) sizes as `WxH`,
    (name, multiplier) lists for Hypernetworks, numbers via str()."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if key in ("Size", "Seed resize from") and isinstance(value, (tuple, list)) and len(value) == 2:
        return f"{int(value[0])}x{int(value[1])}"
    if key == "Hypernetworks" and not isinstance(value, str):
        return format_hypernetworks(value)
    return str(value)


def _ordered(params: dict) -> list[tuple[str, object]]:
    known = [(key, params[key]) for key in FIELD_ORDER if key in params]
    trailing = [(key, params[key]) for key in TRAILING_FIELDS if key in params]
    others = [(key, value) for key, value in params.items() if key not in FIELD_ORDER and key not in TRAILING_FIELDS]
    return known + others + trailing


def format_parameters(params: dict) -> str:
    """The parameters line alone; fields whose value is None are left out."""
    parts = []
    for key, value in _ordered(params):
        if value is None:
            continue
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise HypernetError(
                f"infotext field name {key!r} cannot be read back: use two or more letters, digits, "
                "spaces, '-', '_' or '/', starting with a letter or digit"
            )
        parts.append(f"{key}: {quote(format_value(key, value))}")
    return ", ".join(parts)


def format_infotext(prompt: str, negative_prompt: str | None, params: dict) -> str:
    """The whole infotext, laid out as the webui lays it out (see the module docstring).
    Write one per image: each image of a batch carries its own Seed (and Batch pos)."""
    negative = f"\n{_NEGATIVE_PREFIX} {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative}\n{format_parameters(params)}".strip()


def _typed(key: str, text: str, quoted: bool):
    if quoted or key in TEXT_FIELDS:
        return text
    if _INTEGER.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    if text in ("True", "False"):
        return text == "True"
    return text


def parse_parameters(line: str) -> dict:
    """The fields of a parameters line, typed: integers as int, other numbers as float,
    True/False as bool, and text (always for `TEXT_FIELDS` and quoted values) as str."""
    params: dict = {}
    for key, raw in _FIELD.findall(line):
        quoted = len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"'
        text = unquote(raw) if quoted else raw
        params[key] = _typed(key, text, quoted and text != raw)
    return params


def parse_infotext(text: str) -> tuple[str, str, dict]:
    """(prompt, negative prompt, parameters) from an infotext, read as the webui reads
    it: the last line is parameters only if it holds three or more fields; every line
    from one starting `Negative prompt:` on is the negative prompt. An old `Hypernet:
    NAME` field (with `Hypernet strength: S`, default 1.0) becomes `<hypernet:NAME:S>`
    appended to the prompt, as the webui does when pasting such text (§4.4)."""
    *lines, last = text.strip().split("\n")
    if len(_FIELD.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    in_negative = False
    for line in lines:
        line = line.strip()
        if line.startswith(_NEGATIVE_PREFIX):
            in_negative = True
            line = line[len(_NEGATIVE_PREFIX) :].strip()
        (negative_lines if in_negative else prompt_lines).append(line)
    prompt = "\n".join(prompt_lines)
    negative_prompt = "\n".join(negative_lines)
    params = parse_parameters(last)
    raw = {key: unquote(value) for key, value in _FIELD.findall(last)}
    if "Hypernet" in raw:
        prompt += f"<hypernet:{raw['Hypernet']}:{raw.get('Hypernet strength', '1.0')}>"
    return prompt, negative_prompt, params


# -- PNG ------------------------------------------------------------------------------
def _latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def png_text_chunks(chunks: dict):
    """A PngInfo with each chunk as tEXt, or iTXt (UTF-8) when the text has characters
    beyond Latin-1; None values are left out."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        if value is None:
            continue
        if not isinstance(key, str) or not 1 <= len(key) <= 79 or not _latin1(key):
            raise HypernetError(f"PNG text key {key!r} must be 1 to 79 Latin-1 characters")
        text = str(value)
        if _latin1(text):
            info.add_text(key, text)
        else:
            info.add_itxt(key, text)
    return info


def png_bytes(image, infotext: str | None) -> bytes:
    """The PNG file of `image` with the infotext in its `parameters` chunk, in memory."""
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=png_text_chunks({PARAMETERS_KEY: infotext}))
    return buffer.getvalue()


def write_png(image, path, infotext: str | None, extra_text: dict | None = None) -> Path:
    """Save `image` as PNG with the infotext in a `parameters` text chunk, plus any
    `extra_text` chunks. The file appears complete or not at all."""
    info = png_text_chunks({PARAMETERS_KEY: infotext, **(extra_text or {})})
    path = Path(path)
    with atomic_path(path, suffix=".png") as temporary:
        image.save(temporary, format="PNG", pnginfo=info)
    return path


def read_png_text(path) -> dict[str, str]:
    """Every text chunk (tEXt, zTXt, iTXt) of a PNG, also those after the image data."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.format != "PNG":
                raise HypernetFileError(path, f"is a {image.format} image, expected PNG")
            return {str(key): str(value) for key, value in image.text.items()}
    except FileNotFoundError:
        raise HypernetFileError(path, "no such file") from None
    except IsADirectoryError:
        raise HypernetFileError(path, "is a folder, expected a PNG file") from None
    except UnidentifiedImageError:
        raise HypernetFileError(path, "is not an image (no PNG signature)") from None


def read_png_infotext(path) -> str | None:
    """The `parameters` text of a PNG, or None when it has none."""
    return read_png_text(path).get(PARAMETERS_KEY)
