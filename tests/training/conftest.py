"""Fixtures for the trainer's tests: small drawn datasets, one thread (the tiny pipeline is
tests/conftest.py's `pipe`)."""

from pathlib import Path

import pytest
import torch

from tiny_models import SELF_SIZES, TEXT_WIDTH

SIZES = (*SELF_SIZES, TEXT_WIDTH)
SHAPES = [
    ("red", (230, 40, 40), "circle"),
    ("blue", (40, 60, 230), "square"),
    ("green", (40, 200, 60), "circle"),
    ("yellow", (240, 230, 40), "square"),
]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The CI machine has 2 cores shared with other work: one thread is faster and steadier
    (module scope: autouse fixtures come first, so module fixtures that train see it too)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def draw(path: Path, colour, shape: str, size=(32, 32), alpha: bool = False) -> Path:
    from PIL import Image, ImageDraw

    image = Image.new("RGBA" if alpha else "RGB", size, (20, 20, 30, 0) if alpha else (20, 20, 30))
    painter = ImageDraw.Draw(image)
    box = [size[0] // 5, size[1] // 5, size[0] * 4 // 5, size[1] * 4 // 5]
    (painter.ellipse if shape == "circle" else painter.rectangle)(box, fill=(*colour, 255) if alpha else colour)
    image.save(path)
    return path


def make_dataset(folder: Path, captions: bool = True, count: int = 4) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        name, colour, shape = SHAPES[index % len(SHAPES)]
        draw(folder / f"{index:02d}.png", colour, shape)
        if captions:
            (folder / f"{index:02d}.txt").write_text(f"a {name} {shape}, bold, simple\n", encoding="utf-8")
    return folder


@pytest.fixture
def dataset_dir(tmp_path):
    return make_dataset(tmp_path / "data")


def new_network(seed: int = 0, **options):
    from hypernet.network import Hypernetwork

    return Hypernetwork.create(sizes=list(SIZES), generator_seed=seed, name="tiny", **options)


def base_checksum(pipe) -> str:
    import hashlib

    digest = hashlib.sha256()
    for component in (pipe.unet, pipe.vae, pipe.text_encoder):
        for name, tensor in component.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
