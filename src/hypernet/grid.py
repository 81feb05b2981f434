"""Comparison grids: rows x columns of equal-size images with the row labels on the left,
the column labels on top and an optional title, on white. Only PIL is needed.

Small images (64 x 64 is common for quick checks) are scaled up by a whole factor with
nearest-neighbour sampling so every cell is at least `min_cell` pixels on its short side
and labels have room; pixels stay crisp and comparable. Labels are wrapped to their
space and the font is shrunk when they would not fit.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .errors import HypernetError

TEXT_COLOR = (0, 0, 0)
BACKGROUND = (255, 255, 255)
EMPTY_CELL = (232, 232, 232)  # a cell given as None (e.g. a failed generation)
SMALLEST_FONT = 9
MAX_COLUMN_LABEL_LINES = 3
MAX_TITLE_LINES = 3


@dataclass(frozen=True)
class GridLayout:
    """Where everything goes; pixel coordinates in the finished grid."""

    width: int
    height: int
    rows: int
    columns: int
    scale: int  # whole-number enlargement applied to every image
    cell_width: int
    cell_height: int
    gap: int  # between neighbouring cells
    left: int  # x of the first column's cells
    top: int  # y of the first row's cells
    margin: int
    title_height: int
    header_height: int  # the column labels' band
    row_label_width: int
    font_size: int

    def cell_box(self, row: int, column: int) -> tuple[int, int, int, int]:
        x = self.left + column * (self.cell_width + self.gap)
        y = self.top + row * (self.cell_height + self.gap)
        return x, y, x + self.cell_width, y + self.cell_height


@dataclass
class _TextBlock:
    lines: list[str]
    font: object
    line_height: int

    @property
    def height(self) -> int:
        return len(self.lines) * self.line_height


class _Fonts:
    """PIL's default font at any size, made once per size for one grid."""

    def __init__(self):
        self._by_size: dict[int, object] = {}

    def __call__(self, size: int):
        from PIL import ImageFont

        if size not in self._by_size:
            try:
                self._by_size[size] = ImageFont.load_default(size=size)
            except TypeError:  # Pillow < 10.1: one bitmap size only
                self._by_size[size] = ImageFont.load_default()
        return self._by_size[size]


def _text_width(font, text: str) -> float:
    if hasattr(font, "getlength"):
        return font.getlength(text)
    left, _, right, _ = font.getbbox(text)
    return right - left


def _line_height(font) -> int:
    if hasattr(font, "getmetrics"):
        ascent, descent = font.getmetrics()
        return ascent + descent + 2
    _, top, _, bottom = font.getbbox("Ag")
    return bottom - top + 2


def _wrap(text: str, font, width: float) -> tuple[list[str], bool]:
    """Greedy word wrap; a word wider than the line is cut where it must be (and the
    second value says so)."""
    lines: list[str] = []
    cut = False
    for paragraph in str(text).split("\n"):
        current = ""
        for word in re.findall(r"\S+", paragraph):
            candidate = f"{current} {word}" if current else word
            if _text_width(font, candidate) <= width:
                current = candidate
                continue
            if current:
                lines.append(current)
            current = ""
            for character in word:
                if current and _text_width(font, current + character) > width:
                    lines.append(current)
                    current = ""
                    cut = True
                current += character
        lines.append(current)
    while len(lines) > 1 and not lines[-1]:
        lines.pop()
    return lines, cut


def _fit(text: str, fonts: _Fonts, size: int, width: float, max_lines: int) -> _TextBlock:
    """The text wrapped to `width` in at most `max_lines` lines, at the largest font size
    (from `size` down) that allows it, preferring a slightly smaller font to cutting a
    word; cut with an ellipsis if even the smallest font fails."""
    max_lines = max(1, max_lines)
    width = max(1.0, width)
    if not text:
        font = fonts(size)
        return _TextBlock([], font, _line_height(font))
    for candidate in range(size, max(SMALLEST_FONT, round(size * 0.75)) - 1, -1):
        font = fonts(candidate)
        lines, cut = _wrap(text, font, width)
        if not cut and len(lines) <= max_lines:
            return _TextBlock(lines, font, _line_height(font))
    while True:
        font = fonts(size)
        lines, _ = _wrap(text, font, width)
        if len(lines) <= max_lines or size <= SMALLEST_FONT:
            break
        size -= 1
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and _text_width(font, last + "…") > width:
            last = last[:-1]
        lines[-1] = last + "…"
    return _TextBlock(lines, font, _line_height(font))


def _plan(image_size, rows, columns, row_labels, column_labels, title, min_cell, fonts):
    image_width, image_height = image_size
    scale = max(1, math.ceil(min_cell / min(image_width, image_height)))
    cell_width, cell_height = image_width * scale, image_height * scale
    font_size = max(12, min(40, cell_width // 8))
    pad = max(3, font_size // 3)
    gap = max(2, cell_width // 64)
    margin = pad * 2

    column_blocks = [
        _fit(label, fonts, font_size, cell_width - 2 * pad, MAX_COLUMN_LABEL_LINES) for label in column_labels
    ]
    header_height = max((block.height for block in column_blocks), default=0)
    header_height = header_height + 2 * pad if header_height else 0

    font = fonts(font_size)
    widest = max((_text_width(font, line) for label in row_labels for line in str(label).split("\n")), default=0)
    row_label_width = 0
    if widest:
        row_label_width = int(min(widest + 2 * pad + 1, max(cell_width, 160)))
    row_line_budget = max(1, cell_height // _line_height(font))
    row_blocks = [
        _fit(label, fonts, font_size, row_label_width - 2 * pad, row_line_budget) for label in row_labels
    ]

    grid_width = columns * cell_width + (columns - 1) * gap
    width = margin + row_label_width + grid_width + margin
    title_block = None
    title_height = 0
    if title:
        title_block = _fit(title, fonts, round(font_size * 1.25), width - 2 * margin, MAX_TITLE_LINES)
        title_height = title_block.height + pad
    top = margin + title_height + header_height
    height = top + rows * cell_height + (rows - 1) * gap + margin
    layout = GridLayout(
        width=int(width),
        height=int(height),
        rows=rows,
        columns=columns,
        scale=scale,
        cell_width=cell_width,
        cell_height=cell_height,
        gap=gap,
        left=margin + row_label_width,
        top=top,
        margin=margin,
        title_height=title_height,
        header_height=header_height,
        row_label_width=row_label_width,
        font_size=font_size,
    )
    return layout, title_block, column_blocks, row_blocks


def _check(images, row_labels, column_labels) -> tuple[int, int]:
    if len(images) != len(row_labels):
        raise HypernetError(f"grid has {len(images)} rows of images but {len(row_labels)} row labels; give one label per row")
    for index, row in enumerate(images):
        if len(row) != len(column_labels):
            raise HypernetError(
                f"grid row {index + 1} has {len(row)} images but there are {len(column_labels)} column labels; "
                "give every row one image per column"
            )
    sizes = {image.size for row in images for image in row if image is not None}
    if not sizes:
        raise HypernetError("grid has no images")
    if len(sizes) > 1:
        raise HypernetError(f"grid images differ in size ({', '.join(f'{w}x{h}' for w, h in sorted(sizes))}); resize them to one size first")
    return sizes.pop()


def grid_layout(
    image_size: tuple[int, int],
    row_labels: list[str],
    column_labels: list[str],
    title: str | None = None,
    min_cell: int = 128,
) -> GridLayout:
    """The geometry `labelled_grid` would use for images of `image_size`."""
    layout, *_ = _plan(tuple(image_size), len(row_labels), len(column_labels), row_labels, column_labels, title, min_cell, _Fonts())
    return layout


def labelled_grid(
    images: list[list],
    row_labels: list[str],
    column_labels: list[str],
    title: str | None = None,
    min_cell: int = 128,
):
    """One image: `images[row][column]` (PIL images of one size; None leaves a grey
    cell) under their column labels and beside their row labels, title on top."""
    from PIL import Image, ImageDraw

    image_size = _check(images, row_labels, column_labels)
    fonts = _Fonts()
    layout, title_block, column_blocks, row_blocks = _plan(
        image_size, len(row_labels), len(column_labels), row_labels, column_labels, title, min_cell, fonts
    )
    canvas = Image.new("RGB", (layout.width, layout.height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)

    for row_index, row in enumerate(images):
        for column_index, image in enumerate(row):
            box = layout.cell_box(row_index, column_index)
            if image is None:
                draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=EMPTY_CELL)
                continue
            if image.mode != "RGB":
                flat = Image.new("RGB", image.size, BACKGROUND)
                rgba = image.convert("RGBA")
                flat.paste(rgba, mask=rgba.getchannel("A"))
                image = flat
            if layout.scale != 1:
                image = image.resize((layout.cell_width, layout.cell_height), Image.NEAREST)
            canvas.paste(image, box[:2])

    def draw_block(block: _TextBlock, center_x: float, top: float) -> None:
        for number, line in enumerate(block.lines):
            x = center_x - _text_width(block.font, line) / 2
            draw.text((x, top + number * block.line_height), line, fill=TEXT_COLOR, font=block.font)

    if title_block is not None:
        draw_block(title_block, layout.width / 2, layout.margin)
    header_top = layout.margin + layout.title_height
    for column_index, block in enumerate(column_blocks):
        x0, _, x1, _ = layout.cell_box(0, column_index)
        # labels sit on the bottom of the band, next to their images
        draw_block(block, (x0 + x1) / 2, header_top + layout.header_height - block.height - layout.margin // 2)
    for row_index, block in enumerate(row_blocks):
        _, y0, _, y1 = layout.cell_box(row_index, 0)
        draw_block(block, layout.margin + layout.row_label_width / 2, (y0 + y1) / 2 - block.height / 2)
    return canvas


def xyz_grid(images, x_labels: list[str], y_labels: list[str], z_labels: list[str]):
    """(picture, [grid per Z value]) from `images[z][y][x]`: one labelled grid per Z value
    with the Z label as its title (none without a Z axis), side by side on white. Cells of
    different sizes are centred on the largest."""
    from PIL import Image

    flat = [image for plane in images for row in plane for image in row]
    width, height = max(i.width for i in flat), max(i.height for i in flat)

    def padded(image):
        if image.size == (width, height):
            return image
        canvas = Image.new("RGB", (width, height), BACKGROUND)
        canvas.paste(image.convert("RGB"), ((width - image.width) // 2, (height - image.height) // 2))
        return canvas

    grids = [labelled_grid([[padded(i) for i in row] for row in plane], y_labels, x_labels, title=title or None)
             for plane, title in zip(images, z_labels)]
    if len(grids) == 1:
        return grids[0], grids
    gap = max(8, grids[0].width // 40)
    picture = Image.new("RGB", (sum(g.width for g in grids) + gap * (len(grids) - 1), max(g.height for g in grids)),
                        BACKGROUND)
    left = 0
    for grid in grids:
        picture.paste(grid, (left, 0))
        left += grid.width + gap
    return picture, grids
