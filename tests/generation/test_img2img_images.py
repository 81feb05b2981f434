import numpy as np
import pytest
from PIL import Image

from hypernet.errors import HypernetError
from hypernet.img2img_images import (
    apply_overlay,
    crop_for_inpaint,
    fill_masked,
    latent_mask,
    masked_region,
    overlay_mask,
    paste_back,
    prepare_mask,
    resize_image,
)

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def stripes(width, height, colours, vertical=True):
    """Equal bands of colours, left to right (vertical) or top to bottom."""
    pixels = np.zeros((height, width, 3), np.uint8)
    count = len(colours)
    for index, colour in enumerate(colours):
        if vertical:
            pixels[:, index * width // count:(index + 1) * width // count] = colour
        else:
            pixels[index * height // count:(index + 1) * height // count, :] = colour
    return Image.fromarray(pixels)


def gradient(width, height):
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // (width - 1), y * 255 // (height - 1), (x + 2 * y) * 255 // (width + 2 * height)], -1)
    return Image.fromarray(pixels.astype(np.uint8))


def square_mask(width, height, box, value=255):
    mask = np.zeros((height, width), np.uint8)
    x1, y1, x2, y2 = box
    mask[y1:y2, x1:x2] = value
    return Image.fromarray(mask, "L")


def close(pixel, colour, tolerance=12):
    return np.all(np.abs(np.asarray(pixel, int) - np.asarray(colour)) <= tolerance)


# --- resize modes -------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["just resize", "crop and resize", "resize and fill", 0, 1, 2, "Crop and Resize"])
@pytest.mark.parametrize("source", [(300, 100), (100, 300), (64, 64), (7, 3), (1, 1)])
@pytest.mark.parametrize("target", [(64, 64), (96, 32), (32, 96), (65, 33)])
def test_every_resize_mode_gives_exactly_the_target_size_in_rgb(mode, source, target):
    image = Image.new("L", source, 90)
    result = resize_image(image, *target, mode)
    assert result.size == target and result.mode == "RGB"


def test_just_resize_stretches_the_whole_picture():
    result = np.asarray(resize_image(stripes(300, 100, [RED, BLUE]), 64, 64, "just resize"))
    assert close(result[32, 5], RED) and close(result[32, 58], BLUE)


def test_crop_and_resize_keeps_the_centre_and_cuts_the_sides():
    # red | green (the middle half) | blue, 300 x 100 -> scaled to 192 x 64, middle 64 kept
    picture = np.zeros((100, 300, 3), np.uint8)
    picture[:, :75], picture[:, 75:225], picture[:, 225:] = RED, GREEN, BLUE
    result = np.asarray(resize_image(Image.fromarray(picture), 64, 64, "crop and resize"))
    assert all(close(result[y, x], GREEN) for y in (0, 32, 63) for x in (0, 32, 63))


def test_crop_and_resize_keeps_the_centre_of_a_tall_picture():
    result = np.asarray(resize_image(stripes(100, 300, [RED, GREEN, BLUE], vertical=False), 64, 32, 1))
    assert close(result[0, 10], GREEN) and close(result[31, 50], GREEN)


def test_resize_and_fill_bands_come_from_the_edge_rows():
    # 200 x 100 into 64 x 64: the picture is 64 x 32 in the middle, 16-row bands above and below
    picture = np.zeros((100, 200, 3), np.uint8)
    picture[:20], picture[20:80], picture[80:] = RED, GREEN, BLUE
    result = np.asarray(resize_image(Image.fromarray(picture), 64, 64, "resize and fill"))
    assert np.array_equal(result[:16], np.broadcast_to(result[16], (16, 64, 3)))
    assert np.array_equal(result[48:], np.broadcast_to(result[47], (16, 64, 3)))
    assert close(result[0, 30], RED) and close(result[63, 30], BLUE) and close(result[32, 30], GREEN)


def test_resize_and_fill_bands_come_from_the_edge_columns_and_reach_the_border():
    picture = np.zeros((100, 50, 3), np.uint8)
    picture[:, :10], picture[:, 10:40], picture[:, 40:] = RED, GREEN, BLUE
    result = np.asarray(resize_image(Image.fromarray(picture), 65, 40, 2))  # picture 20 wide, odd bands
    assert result.shape == (40, 65, 3)
    assert close(result[20, 0], RED) and close(result[20, 64], BLUE)
    assert np.array_equal(result[:, -1], result[:, -2])


def test_resize_and_fill_of_the_same_aspect_is_a_plain_resize():
    image = gradient(128, 64)
    assert np.array_equal(np.asarray(resize_image(image, 64, 32, 2)), np.asarray(resize_image(image, 64, 32, 0)))


def test_a_transparent_picture_is_laid_on_white():
    result = resize_image(Image.new("RGBA", (10, 10), (255, 0, 0, 0)), 10, 10)
    assert result.getpixel((5, 5)) == (255, 255, 255)


@pytest.mark.parametrize("mode", ["stretch", 3, True, None, "just resize (latent upscale)"])
def test_an_unknown_resize_mode_lists_the_valid_ones(mode):
    with pytest.raises(HypernetError, match="resize mode .* use one of 'just resize' \\(0\\), 'crop and resize' \\(1\\)"):
        resize_image(Image.new("RGB", (8, 8)), 8, 8, mode)


@pytest.mark.parametrize("call,message", [
    (lambda: resize_image(np.zeros((8, 8, 3)), 8, 8), "image must be a PIL image"),
    (lambda: resize_image("init.png", 8, 8), "image must be a PIL image"),
    (lambda: resize_image(Image.new("RGB", (8, 8)), 0, 8), "width must be a whole number of pixels, at least 1"),
    (lambda: resize_image(Image.new("RGB", (8, 8)), 8, 8.5), "height must be a whole number"),
    (lambda: prepare_mask(Image.new("L", (8, 8)), 8, 8, blur=-1), "mask blur must be .* at least 0"),
    (lambda: prepare_mask(Image.new("L", (8, 8)), 8, 8, blur=(1, 2, 3)), "mask blur"),
    (lambda: prepare_mask(Image.new("L", (8, 8)), 8, 8, resize_mode="zoom"), "resize mode 'zoom'"),
    (lambda: latent_mask(Image.new("RGB", (8, 8)), 1, 1), "mask_L must be an 'L' mask"),
    (lambda: latent_mask(Image.new("L", (8, 8)), 0, 1), "latent_width"),
    (lambda: masked_region(Image.new("L", (8, 8), 255), -1, 8, 8), "padding must be .* at least 0"),
    (lambda: crop_for_inpaint(Image.new("RGB", (8, 8)), Image.new("L", (9, 8)), (0, 0, 4, 4), 8, 8),
     "mask must be 8 x 8 like the picture"),
    (lambda: crop_for_inpaint(Image.new("RGB", (8, 8)), Image.new("L", (8, 8)), (0, 0, 9, 4), 8, 8),
     "region .* must be a non-empty box inside the 8 x 8 picture"),
    (lambda: crop_for_inpaint(Image.new("RGB", (8, 8)), Image.new("L", (8, 8)), "all", 8, 8), "region must be four"),
    (lambda: apply_overlay(Image.new("RGB", (8, 8)), Image.new("RGB", (9, 8)), Image.new("L", (9, 8))),
     "generated must be 9 x 8 like original"),
    (lambda: fill_masked(Image.new("RGB", (8, 8)), Image.new("L", (4, 4))), "mask_L must be 8 x 8"),
])
def test_bad_input_is_named(call, message):
    with pytest.raises(HypernetError, match=message):
        call()


# --- masks --------------------------------------------------------------------------------

def test_mask_blur_softens_edges_and_zero_blur_keeps_them_hard():
    mask = square_mask(64, 64, (16, 16, 48, 48))
    hard = np.asarray(prepare_mask(mask, 64, 64, blur=0))
    soft = np.asarray(prepare_mask(mask, 64, 64, blur=4))
    assert set(np.unique(hard)) == {0, 255}
    assert soft[32, 32] == 255 and soft[0, 0] == 0
    assert 0 < soft[32, 16] < 255 and 0 < soft[32, 15] < 255 and 0 < soft[16, 32] < 255
    assert len(np.unique(soft)) > 10


def test_mask_blur_in_one_direction_only():
    soft_x = np.asarray(prepare_mask(square_mask(64, 64, (16, 16, 48, 48)), 64, 64, blur=(6, 0)))
    assert 0 < soft_x[32, 16] < 255  # left edge softened
    assert soft_x[15, 32] == 0 and soft_x[16, 32] == 255  # top edge still hard


def test_invert_flips_the_mask():
    mask = square_mask(32, 32, (4, 4, 20, 20))
    assert np.array_equal(np.asarray(prepare_mask(mask, 32, 32, blur=0, invert=True)), 255 - np.asarray(mask))


def test_an_rgba_mask_is_read_from_its_alpha():
    strokes = np.zeros((32, 32, 4), np.uint8)
    strokes[8:16, 8:16] = (0, 0, 0, 255)  # black but opaque: painted
    strokes[20:24, 20:24] = (255, 255, 255, 100)  # faint: below the threshold
    mask = np.asarray(prepare_mask(Image.fromarray(strokes, "RGBA"), 32, 32, blur=0))
    assert mask[10, 10] == 255 and mask[22, 22] == 0 and mask[0, 0] == 0


def test_an_opaque_rgba_or_rgb_mask_is_read_from_its_brightness():
    picture = np.zeros((32, 32, 3), np.uint8)
    picture[8:16, 8:16] = 255
    for image in (Image.fromarray(picture).convert("RGBA"), Image.fromarray(picture)):
        mask = np.asarray(prepare_mask(image, 32, 32, blur=0))
        assert mask[10, 10] == 255 and mask[0, 0] == 0


def test_the_mask_is_resized_like_the_picture():
    mask = square_mask(300, 100, (0, 0, 75, 100))  # the left quarter, cut off by crop and resize
    assert prepare_mask(mask, 64, 32, blur=0).size == (64, 32)
    cropped = np.asarray(prepare_mask(mask, 64, 64, blur=0, resize_mode="crop and resize"))
    assert cropped.max() == 0
    stretched = np.asarray(prepare_mask(mask, 64, 64, blur=0, resize_mode="just resize"))
    assert stretched[32, 4] > 200


def test_latent_mask_shrinks_and_rounds():
    mask = prepare_mask(square_mask(64, 64, (0, 0, 32, 64)), 64, 64, blur=2)
    latent = latent_mask(mask, 8, 8)
    assert latent.shape == (8, 8) and latent.dtype == np.float32
    assert set(np.unique(latent)) == {0.0, 1.0}
    assert latent[:, :3].min() == 1 and latent[:, 5:].max() == 0
    soft = latent_mask(mask, 8, 8, rounded=False)
    assert np.any((soft > 0.01) & (soft < 0.99)) and soft.min() >= 0 and soft.max() <= 1


def test_overlay_mask_doubles_and_clips():
    mask = Image.fromarray(np.array([[0, 10, 127, 128, 255]], np.uint8), "L")
    assert np.asarray(overlay_mask(mask)).tolist() == [[0, 20, 254, 255, 255]]


# --- only masked --------------------------------------------------------------------------

def test_masked_region_is_the_mask_box_grown_by_padding():
    mask = square_mask(512, 512, (200, 210, 240, 250))
    assert masked_region(mask, 0, 64, 64) == (200, 210, 240, 250)
    assert masked_region(mask, 32, 64, 64) == (168, 178, 272, 282)


def test_masked_region_grows_to_the_target_aspect():
    mask = square_mask(512, 512, (200, 200, 240, 240))
    x1, y1, x2, y2 = masked_region(mask, 0, 128, 64)
    assert (x1, y1, x2, y2) == (180, 200, 260, 240)
    x1, y1, x2, y2 = masked_region(mask, 10, 64, 128)
    assert (x2 - x1) * 2 == y2 - y1 and (x1, x2) == (190, 250)


def test_masked_region_slides_back_inside_at_a_border():
    mask = square_mask(512, 512, (0, 200, 20, 240))
    x1, y1, x2, y2 = masked_region(mask, 32, 64, 64)
    assert (x1, y1, x2, y2) == (0, 168, 104, 272)  # 52 wide grown to 104, slid right of 0
    mask = square_mask(512, 512, (490, 500, 512, 512))
    x1, y1, x2, y2 = masked_region(mask, 8, 128, 64)
    assert x2 - x1 == 2 * (y2 - y1) and x2 == 512 and y2 == 512 and x1 <= 482 and y1 <= 492


def test_masked_region_is_cut_where_the_picture_is_too_small():
    mask = square_mask(100, 400, (10, 100, 90, 300))
    assert masked_region(mask, 0, 128, 64) == (0, 100, 100, 300)  # cannot get wider than the picture


def test_an_empty_mask_is_an_error():
    with pytest.raises(HypernetError, match="the mask is empty: nothing to inpaint"):
        masked_region(Image.new("L", (64, 64)), 32, 64, 64)


@pytest.mark.parametrize("box,padding,size", [
    ((100, 60, 140, 100), 16, (64, 64)),
    ((100, 60, 140, 100), 8, (96, 64)),
    ((0, 0, 30, 190), 4, (64, 32)),  # too tall a mask: the crop gets fill bands
])
def test_crop_then_paste_back_puts_pixels_where_they_came_from(box, padding, size):
    original = gradient(256, 192)
    mask = square_mask(256, 192, box)
    region = masked_region(mask, padding, *size)
    image, region_mask = crop_for_inpaint(original, mask, region, *size)
    assert image.size == region_mask.size == size and image.mode == "RGB" and region_mask.mode == "L"
    everywhere = Image.new("L", original.size, 255)
    back = np.asarray(paste_back(original, image, region, everywhere)).astype(int)
    x1, y1, x2, y2 = region
    error = np.abs(back[y1:y2, x1:x2] - np.asarray(original).astype(int)[y1:y2, x1:x2])
    assert error.mean() < 3 and np.median(error) <= 2
    assert np.array_equal(back[:, :x1], np.asarray(original)[:, :x1])


def test_paste_back_keeps_the_original_outside_the_mask():
    original = gradient(256, 192)
    mask = prepare_mask(square_mask(256, 192, (100, 60, 140, 100)), 256, 192, blur=4)
    region = masked_region(mask, 32, 64, 64)
    result = np.asarray(paste_back(original, Image.new("RGB", (64, 64), (0, 0, 0)), region, mask))
    outside = np.asarray(mask) == 0
    assert np.array_equal(result[outside], np.asarray(original)[outside])
    assert result[80, 120].tolist() == [0, 0, 0]  # the middle of the mask is the generated picture
    edge = np.asarray(mask)[80, 100 - 3]
    assert 0 < edge < 255 and 0 < result[80, 97].sum() < np.asarray(original)[80, 97].astype(int).sum()


# --- fill ---------------------------------------------------------------------------------

def test_fill_paints_a_hole_in_red_red_and_keeps_the_rest():
    picture = np.zeros((64, 64, 3), np.uint8)
    picture[:] = RED
    picture[20:44, 20:44] = BLUE  # what the hole held
    mask = square_mask(64, 64, (20, 20, 44, 44))
    filled = np.asarray(fill_masked(Image.fromarray(picture), mask))
    assert np.array_equal(filled[np.asarray(mask) == 0], picture[np.asarray(mask) == 0])
    assert all(close(filled[y, x], RED, 2) for y in (20, 32, 43) for x in (20, 32, 43))


def test_fill_takes_the_colour_nearby():
    picture = np.asarray(stripes(128, 64, [RED, BLUE])).copy()
    mask = square_mask(128, 64, (8, 24, 40, 40))  # a hole in the red half
    blurred = prepare_mask(mask, 128, 64, blur=4)
    filled = np.asarray(fill_masked(Image.fromarray(picture), blurred)).astype(int)
    assert filled[32, 24, 0] > 200 and filled[32, 24, 2] < 40
    kept = np.asarray(blurred) == 0
    assert np.array_equal(filled[kept], picture[kept])


# --- overlay ------------------------------------------------------------------------------

def test_apply_overlay_keeps_unmasked_pixels_identical():
    generator = np.random.default_rng(0)
    original = Image.fromarray(generator.integers(0, 256, (32, 48, 3), dtype=np.uint8))
    generated = Image.fromarray(generator.integers(0, 256, (32, 48, 3), dtype=np.uint8))
    mask = np.zeros((32, 48), np.uint8)
    mask[:, 16:32], mask[:, 32:] = 128, 255
    result = np.asarray(apply_overlay(generated, original, Image.fromarray(mask, "L"))).astype(int)
    before, after = np.asarray(original).astype(int), np.asarray(generated).astype(int)
    assert np.array_equal(result[:, :16], before[:, :16])
    assert np.array_equal(result[:, 32:], after[:, 32:])
    assert np.abs(result[:, 16:32] - (before[:, 16:32] + after[:, 16:32]) / 2).max() <= 1
