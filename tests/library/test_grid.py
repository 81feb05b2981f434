import pytest
from PIL import Image

from hypernet.errors import HypernetError
from hypernet.grid import grid_layout, labelled_grid

COLORS = [[(200, 0, 0), (0, 200, 0), (0, 0, 200)], [(200, 200, 0), (0, 200, 200), (200, 0, 200)]]
ROWS = ["<hypernet:anime:0.5>", "no hypernetwork at all, the base model alone"]
COLUMNS = ["seed 1", "seed 2 with a rather long label that must wrap", "x" * 60]


def images(size=(64, 64)):
    return [[Image.new("RGB", size, color) for color in row] for row in COLORS]


def non_white(image, box):
    region = image.crop(box).convert("L")
    return sum(region.histogram()[:128])


def test_two_by_three_grid_geometry_and_cells():
    grid = labelled_grid(images(), ROWS, COLUMNS)
    layout = grid_layout((64, 64), ROWS, COLUMNS)
    assert layout.scale == 2 and (layout.cell_width, layout.cell_height) == (128, 128)
    assert grid.size == (layout.width, layout.height)
    assert layout.width == 2 * layout.margin + layout.row_label_width + 3 * 128 + 2 * layout.gap
    assert layout.height == 2 * layout.margin + layout.header_height + 2 * 128 + layout.gap
    assert grid.mode == "RGB"
    for row in range(2):
        for column in range(3):
            x0, y0, x1, y1 = layout.cell_box(row, column)
            assert grid.getpixel((x0, y0)) == COLORS[row][column]
            assert grid.getpixel((x1 - 1, y1 - 1)) == COLORS[row][column]
    assert grid.getpixel((0, 0)) == (255, 255, 255)


def test_label_areas_hold_text():
    grid = labelled_grid(images(), ROWS, COLUMNS)
    layout = grid_layout((64, 64), ROWS, COLUMNS)
    for column in range(3):
        x0, y0, x1, _ = layout.cell_box(0, column)
        assert non_white(grid, (x0, 0, x1, y0)) > 20, f"column label {column} is blank"
    for row in range(2):
        _, y0, x0, y1 = layout.cell_box(row, 0)
        assert non_white(grid, (0, y0, layout.left, y1)) > 20, f"row label {row} is blank"
    # the long column labels wrapped rather than spilling over the neighbouring column
    assert layout.header_height > layout.font_size * 2


def test_title_adds_a_band_and_is_drawn():
    plain = grid_layout((64, 64), ROWS, COLUMNS)
    titled = grid_layout((64, 64), ROWS, COLUMNS, title="CFG 7, 20 steps")
    assert titled.width == plain.width and titled.height > plain.height
    grid = labelled_grid(images(), ROWS, COLUMNS, title="CFG 7, 20 steps")
    assert grid.size == (titled.width, titled.height)
    assert non_white(grid, (0, 0, grid.width, titled.title_height)) > 20


def test_large_images_are_not_scaled_and_none_cells_are_grey():
    grid_images = images((160, 128))
    grid_images[1][2] = None
    grid = labelled_grid(grid_images, ["a", "b"], ["1", "2", "3"])
    layout = grid_layout((160, 128), ["a", "b"], ["1", "2", "3"])
    assert layout.scale == 1 and grid.size == (layout.width, layout.height)
    x0, y0, _, _ = layout.cell_box(1, 2)
    assert grid.getpixel((x0 + 5, y0 + 5)) == (232, 232, 232)


def test_rgba_and_grey_images_are_flattened_on_white():
    cells = [[Image.new("RGBA", (64, 64), (0, 0, 0, 0)), Image.new("L", (64, 64), 0)]]
    grid = labelled_grid(cells, [""], ["", ""])
    layout = grid_layout((64, 64), [""], ["", ""])
    assert layout.row_label_width == 0 and layout.header_height == 0
    assert grid.getpixel(layout.cell_box(0, 0)[:2]) == (255, 255, 255)
    assert grid.getpixel(layout.cell_box(0, 1)[:2]) == (0, 0, 0)


def test_mismatches_are_refused_clearly():
    with pytest.raises(HypernetError, match="2 rows of images but 1 row labels"):
        labelled_grid(images(), ["a"], COLUMNS)
    with pytest.raises(HypernetError, match="row 1 has 3 images but there are 2 column labels"):
        labelled_grid(images(), ROWS, ["a", "b"])
    mixed = images()
    mixed[0][0] = Image.new("RGB", (32, 32))
    with pytest.raises(HypernetError, match="differ in size"):
        labelled_grid(mixed, ROWS, COLUMNS)


def test_xyz_grid_puts_one_titled_grid_per_z_value_side_by_side_and_pads_odd_sizes():
    from hypernet.grid import xyz_grid

    red, blue = Image.new("RGB", (64, 64), (200, 0, 0)), Image.new("RGB", (32, 64), (0, 0, 200))
    picture, grids = xyz_grid([[[red, blue]], [[blue, red]]], ["x1", "x2"], [""], ["Sampler: DDIM", "Sampler: Euler a"])
    layout = grid_layout((64, 64), [""], ["x1", "x2"], title="Sampler: DDIM")
    assert len(grids) == 2 and all(grid.size == (layout.width, layout.height) for grid in grids)
    assert picture.width > 2 * layout.width and picture.height == layout.height
    x0, y0, x1, y1 = layout.cell_box(0, 1)  # the narrow blue cell, centred on white
    assert grids[0].getpixel(((x0 + x1) // 2, (y0 + y1) // 2)) == (0, 0, 200)
    assert grids[0].getpixel((x0 + 2, (y0 + y1) // 2)) == (255, 255, 255)
    assert non_white(grids[0], (0, 0, grids[0].width, layout.title_height)) > 20
    single, only = xyz_grid([[[red]]], [""], [""], [""])
    plain = grid_layout((64, 64), [""], [""])
    assert only == [single] and single.size == (plain.width, plain.height)
