"""The dataset: listing and checking files, resize modes, alpha weights, epoch batches."""

import pytest
import torch
from PIL import Image

from hypernet.errors import HypernetFileError
from hypernet.training import dataset

from .conftest import draw, make_dataset


def test_missing_empty_and_imageless_folders_are_refused(tmp_path):
    with pytest.raises(HypernetFileError, match="does not exist"):
        dataset.list_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(HypernetFileError, match="no images.*it is empty"):
        dataset.list_images(tmp_path / "empty")
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.txt").write_text("x")
    with pytest.raises(HypernetFileError, match="no images.*holds a.txt"):
        dataset.list_images(tmp_path / "text")


def test_every_unreadable_image_is_listed_by_name(tmp_path):
    folder = make_dataset(tmp_path / "data")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    good = (folder / "00.png").read_bytes()
    (folder / "cut.png").write_bytes(good[: len(good) // 2])
    (folder / "notes.md").write_text("ignored: not an image extension")
    with pytest.raises(HypernetFileError) as caught:
        dataset.scan(folder)
    message = str(caught.value)
    assert "2 image(s) cannot be read" in message and "broken.png" in message and "cut.png" in message


def test_captions_are_read_with_the_images(tmp_path):
    folder = make_dataset(tmp_path / "data", captions=False, count=1)
    draw(folder / "5-a blue square.png", (0, 0, 255), "square")
    sources = dataset.scan(folder)
    assert [s.caption for s in sources] == ["", "a blue square"]  # "00" is all digits


def test_resize_modes():
    image = Image.new("RGB", (70, 36))
    assert dataset.prepare(image, "stretch", (32, 32), 2).size == (32, 32)
    assert dataset.prepare(image, "keep", (32, 32), 8).size == (64, 32)
    assert dataset.bucket_size((1000, 500), (512, 512), 64) == (704, 320)
    assert dataset.bucket_size((500, 1000), (512, 512), 64) == (320, 704)
    assert dataset.bucket_size((600, 600), (512, 512), 64) == (512, 512)
    assert dataset.prepare(image, "bucket", (32, 32), 2).size == (48, 16)  # sides in steps of 8 latent pixels
    assert dataset.prepare(Image.new("RGB", (50, 40)), "bucket", (32, 32), 2).size == (32, 32)


def test_alpha_weight_is_min_zero_mean_one_and_ones_without_alpha(tmp_path):
    path = draw(tmp_path / "a.png", (255, 0, 0), "square", alpha=True)
    with Image.open(path) as image:
        weight = dataset.alpha_weight(dataset.prepare(image, "stretch", (32, 32), 2), (16, 16))
    assert weight.shape == (1, 16, 16)
    assert weight.min().item() == pytest.approx(0, abs=1e-6) and weight.mean().item() == pytest.approx(1, abs=1e-5)
    assert torch.equal(dataset.alpha_weight(Image.new("RGB", (32, 32)), (16, 16)), torch.ones(1, 16, 16))
    opaque = Image.new("RGBA", (32, 32), (1, 2, 3, 255))
    assert torch.equal(dataset.alpha_weight(opaque, (16, 16)), torch.ones(1, 16, 16))


def test_epoch_batches_are_deterministic_full_and_single_sized():
    groups = {(4, 8, 8): list(range(7)), (4, 8, 12): list(range(7, 10))}
    first = dataset.epoch_batches(groups, 2, seed=5, epoch=0)
    assert first == dataset.epoch_batches(groups, 2, seed=5, epoch=0)
    assert first != dataset.epoch_batches(groups, 2, seed=5, epoch=1)
    assert len(first) == 10 // 2
    for batch in first:
        assert len(batch) == 2 and len(set(batch)) == 2
        assert set(batch) <= set(groups[(4, 8, 8)]) or set(batch) <= set(groups[(4, 8, 12)])
    single = dataset.epoch_batches({(4, 8, 8): list(range(9))}, 4, seed=1, epoch=3)
    assert len(single) == 2 and len({i for b in single for i in b}) == 8  # drop-last, no repeats
