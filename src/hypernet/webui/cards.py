"""The extra-network cards (Hypernetworks, LoRA, Textual Inversion) and what a click on
one does to the prompt.

The cards are plain HTML in a `gr.HTML`; one delegated click listener (`CARD_JS`) sends
`trigger('click', {kind, name, action})` to the server, where `toggle_tag` edits the
prompt. Keeping the prompt editing in Python (not in browser JavaScript, as the webui
does) lets the same functions be tested without a browser and used by the API later.
"""

from __future__ import annotations

import colorsys
import hashlib
import html
import io
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from ..library import PREVIEW_EXTENSIONS

KINDS = ("hypernet", "lora", "embedding")
KIND_TITLES = {"hypernet": "Hypernetworks", "lora": "LoRA", "embedding": "Textual Inversion"}
SORTS = ("name", "date modified (newest first)")
DEFAULT_CARD_SIZE = 180
THUMBNAIL_SIDE = 256

# One listener on the component's root element: it survives every re-render of the
# cards (innerHTML changes, the root does not). A click on the card toggles its tag; a
# click on its ⓘ button opens the info panel instead.
CARD_JS = """
element.addEventListener('click', function (event) {
    const card = event.target.closest('.hn-card');
    if (!card) return;
    const button = event.target.closest('[data-action]');
    trigger('click', {kind: card.dataset.kind, name: card.dataset.name,
                      action: button ? button.dataset.action : 'toggle'});
});
"""


@dataclass
class Card:
    kind: str  # hypernet | lora | embedding
    name: str  # what the prompt tag or word uses
    folder: str  # sub-folder below the library root ("" at the top)
    description: str
    preview: Path | None
    mtime: float


# -- listing ----------------------------------------------------------------------------


def hypernet_cards(service) -> list[Card]:
    library = service.library
    cards = []
    for entry in library.entries():
        folder = entry.relative_name.rpartition("/")[0]
        try:
            name = library.tag_name(entry)
        except Exception:  # noqa: BLE001 - an odd file must not hide the others
            name = entry.relative_file
        cards.append(Card("hypernet", name, folder, entry.description or "", entry.preview, entry.mtime))
    return cards


def _side_car_preview(path: Path) -> Path | None:
    for extension in PREVIEW_EXTENSIONS:
        for candidate in (path.with_suffix(f".{extension}"), path.with_suffix(f".preview.{extension}")):
            if candidate.is_file():
                return candidate
    return None


def _side_car_description(path: Path) -> str:
    for suffix in (".txt", ".description.txt"):
        candidate = path.with_suffix(suffix)
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8", errors="replace")
    return ""


def file_cards(kind: str, root: Path) -> list[Card]:
    """LoRA or embedding files of one folder, found as the generator finds them."""
    from ..extra_networks import EMBEDDING_SUFFIXES, LORA_SUFFIXES, _files

    suffixes = LORA_SUFFIXES if kind == "lora" else EMBEDDING_SUFFIXES
    cards = []
    for name, path in _files(Path(root), suffixes).items():
        folder = path.parent.relative_to(root).as_posix() if path.parent != Path(root) else ""
        cards.append(Card(kind, name, "" if folder == "." else folder, _side_car_description(path),
                          _side_car_preview(path), path.stat().st_mtime))
    return cards


def cards_for(service, kind: str) -> list[Card]:
    if kind == "hypernet":
        return hypernet_cards(service)
    if kind == "lora":
        return file_cards(kind, service.paths.lora_dir)
    return file_cards(kind, service.paths.embeddings_dir)


def select_cards(cards: list[Card], search: str = "", sort: str = SORTS[0]) -> list[Card]:
    """Search (every word must appear in name, folder or description) and sort."""
    words = str(search or "").lower().split()
    shown = [c for c in cards if all(w in f"{c.folder}/{c.name} {c.description}".lower() for w in words)]
    if sort == SORTS[1]:
        return sorted(shown, key=lambda c: (-c.mtime, c.name.lower()))
    return sorted(shown, key=lambda c: (c.folder.lower(), c.name.lower()))


# -- HTML -------------------------------------------------------------------------------

class Thumbnails:
    """Small JPEGs of the preview pictures, made once per file version. One object per
    mounted UI (its route serves them), so nothing is cached at module level."""

    def __init__(self, side: int = THUMBNAIL_SIDE, limit: int = 1024):
        self.side, self.limit = side, limit
        self._cache: dict[tuple, bytes] = {}

    def get(self, path: Path) -> bytes | None:
        from PIL import Image

        try:
            stat = path.stat()
        except OSError:
            return None
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        if key not in self._cache:
            try:
                with Image.open(path) as picture:
                    picture = picture.convert("RGB")
                    picture.thumbnail((self.side, self.side))
                    buffer = io.BytesIO()
                    picture.save(buffer, format="JPEG", quality=85)
            except OSError:
                return None
            if len(self._cache) >= self.limit:
                self._cache.clear()
            self._cache[key] = buffer.getvalue()
        return self._cache[key]


def find_card(service, kind: str, name: str) -> Card | None:
    if kind not in KINDS:
        return None
    return next((card for card in cards_for(service, kind) if card.name == name), None)


def thumbnail_url(card: Card) -> str | None:
    """The UI's thumbnail route for a card's preview; the file's version in the query
    lets the browser cache it until the picture changes."""
    if card.preview is None:
        return None
    try:
        version = card.preview.stat().st_mtime_ns
    except OSError:
        return None
    return f"webui/thumbnail?kind={card.kind}&name={quote(card.name, safe='')}&v={version}"


def placeholder_style(name: str) -> str:
    """A gradient made from the name's hash: each card without a preview looks its own."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    colours = []
    for index in (0, 1):
        red, green, blue = colorsys.hls_to_rgb(digest[index] / 255, 0.45, 0.55)
        colours.append(f"rgb({red * 255:.0f},{green * 255:.0f},{blue * 255:.0f})")
    return f"background:linear-gradient({digest[2] % 360}deg,{colours[0]},{colours[1]})"


def card_id(kind: str, name: str) -> str:
    return f"card-{kind}-" + re.sub(r"[^A-Za-z0-9_-]", "_", name)


def card_html(card: Card, size: int, selected: set[str]) -> str:
    name = html.escape(card.name, quote=True)
    url = thumbnail_url(card)
    if url:
        image = f'<div class="hn-card-image" style="background-image:url({html.escape(url)})"></div>'
    else:
        initial = html.escape(card.name.rpartition("/")[2][:1].upper() or "?")
        image = (f'<div class="hn-card-image hn-card-placeholder" style="{placeholder_style(card.name)}">'
                 f'<span>{initial}</span></div>')
    folder = f'<div class="hn-card-folder">{html.escape(card.folder)}/</div>' if card.folder else ""
    description = html.escape(card.description.strip())
    classes = "hn-card hn-card-selected" if card.name in selected else "hn-card"
    return (f'<div class="{classes}" id="{card_id(card.kind, card.name)}" data-kind="{card.kind}" '
            f'data-name="{name}" title="{name}" style="width:{size}px;height:{int(size * 1.5)}px">{image}'
            f'<button class="hn-card-info" data-action="info" title="info and description">i</button>'
            f'<div class="hn-card-text">{folder}<div class="hn-card-name">{name}</div>'
            f'<div class="hn-card-description">{description}</div></div></div>')


def cards_html(cards: list[Card], size: int = DEFAULT_CARD_SIZE, prompt: str = "", kind: str = "hypernet") -> str:
    if not cards:
        return (f'<div class="hn-cards-empty">No {KIND_TITLES[kind]} files found. Put files in the folder and '
                'press Refresh.</div>')
    selected = {name for tag_kind, name, _ in tags_in(prompt) if tag_kind == kind}
    if kind == "embedding":
        selected = {c.name for c in cards if _word(c.name).search(prompt or "")}
    size = max(80, min(400, int(size or DEFAULT_CARD_SIZE)))
    return '<div class="hn-cards">' + "".join(card_html(card, size, selected) for card in cards) + "</div>"


# -- the prompt -------------------------------------------------------------------------


def format_multiplier(multiplier: float) -> str:
    """As the webui's cards write it, to the slider's precision (4 decimals)."""
    from ..library import format_multiplier as card_style

    return card_style(round(float(multiplier), 4))


_TAG = re.compile(r"<(hypernet|lora):([^:>]+)(?::([^:>]*))?((?::[^>]*)?)>")


def tags_in(prompt: str) -> list[tuple[str, str, str]]:
    """(kind, name, multiplier text) of every hypernet/lora tag."""
    return [(m.group(1), m.group(2), m.group(3) or "") for m in _TAG.finditer(prompt or "")]


def _tag_pattern(kind: str, name: str) -> re.Pattern:
    return re.compile(r"<" + kind + ":" + re.escape(name) + r"(?::[^>]*)?>")


def _word(name: str) -> re.Pattern:
    return re.compile(r"(?<![\w-])" + re.escape(name) + r"(?![\w-])")


def _tidy(prompt: str) -> str:
    prompt = re.sub(r"[ \t]{2,}", " ", prompt)
    prompt = re.sub(r"\s+,", ",", prompt)
    prompt = re.sub(r",\s*,", ",", prompt)
    return prompt.strip().strip(",").strip()


def toggle_tag(prompt: str, kind: str, name: str, multiplier: float = 1.0,
               separator: str = " ") -> tuple[str, bool]:
    """(new prompt, added). A tag already in the prompt for `name` is removed (with the
    separator before it); otherwise `<kind:name:multiplier>` is appended, as the webui's
    cards do. An embedding is a word: its name is added or removed."""
    prompt = prompt or ""
    pattern = _word(name) if kind == "embedding" else _tag_pattern(kind, name)
    if pattern.search(prompt):
        return _tidy(pattern.sub("", prompt)), False
    text = name if kind == "embedding" else f"<{kind}:{name}:{format_multiplier(multiplier)}>"
    if not prompt.strip():
        return text, True
    return prompt.rstrip() + (separator or " ") + text, True


def set_multiplier(prompt: str, kind: str, name: str, multiplier: float) -> str:
    """The prompt with the (first) tag for `name` at `multiplier`; other fields after the
    multiplier (a LoRA's unet weight) are kept. Unchanged when the tag is not there."""
    pattern = re.compile(r"<" + kind + ":" + re.escape(name) + r"(?::([^:>]*))?((?::[^>]*)?)>")
    value = format_multiplier(multiplier)
    return pattern.sub(lambda m: f"<{kind}:{name}:{value}{m.group(2) or ''}>", prompt or "", count=1)


def multiplier_of(prompt: str, kind: str, name: str) -> float | None:
    for tag_kind, tag_name, text in tags_in(prompt):
        if tag_kind == kind and tag_name == name:
            try:
                return float(text) if text else 1.0
            except ValueError:
                return None
    return None


def last_tag(prompt: str) -> tuple[str, str] | None:
    """The tag the strength slider edits when none was clicked: the last in the prompt."""
    found = tags_in(prompt)
    return (found[-1][0], found[-1][1]) if found else None
