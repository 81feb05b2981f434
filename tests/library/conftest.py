import json
from pathlib import Path

import pytest

import hypernet


def make_network(path: Path, sizes=(16,), seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    hypernet.save(hypernet.Hypernetwork.create(sizes=list(sizes), generator_seed=seed), path)
    return path


@pytest.fixture(scope="session")
def template_files(tmp_path_factory):
    """One small network in each format, written once and copied into each library."""
    folder = tmp_path_factory.mktemp("templates")
    return {suffix: make_network(folder / f"template{suffix}").read_bytes() for suffix in (".pt", ".safetensors")}


@pytest.fixture
def library_dir(tmp_path, template_files):
    """A nested library: duplicates across folders, a .pt/.safetensors pair, side-cars."""
    root = tmp_path / "hypernetworks"

    def make_network(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(template_files[path.suffix])

    make_network(root / "anime.pt")
    (root / "anime.preview.png").write_bytes(b"not really a png")
    (root / "anime.txt").write_text("from the txt file", encoding="utf-8")
    make_network(root / "style" / "name.pt")
    make_network(root / "other" / "name.safetensors")
    (root / "other" / "name.jpg").write_bytes(b"jpeg")
    (root / "other" / "name.description.txt").write_bytes("caf\xe9 \xff".encode("latin-1"))
    make_network(root / "pair.pt")
    make_network(root / "pair.safetensors")
    make_network(root / "Zeta" / "deep" / "Painterly.pt")
    (root / "Zeta" / "deep" / "Painterly.json").write_text(json.dumps({"description": "from json", "notes": "n"}), encoding="utf-8")
    (root / "Zeta" / "deep" / "Painterly.txt").write_text("overridden", encoding="utf-8")
    make_network(root / "broken_meta.pt")
    (root / "broken_meta.json").write_text("{not json", encoding="utf-8")
    make_network(root / "None.pt")
    (root / "anime.pt.optim").write_bytes(b"optimizer side-car")
    make_network(root / ".hidden" / "secret.pt")
    (root / "notes.txt").write_text("not a network", encoding="utf-8")
    return root
