import json
import subprocess
import sys
from pathlib import Path

from hypernet.cli import main


def test_list_shows_names_sizes_previews_and_warns_about_ambiguity(library_dir, capsys):
    assert main(["list", "--dir", str(library_dir), "--no-packaged"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].split() == ["NAME", "SIZES", "FILE", "PREVIEW", "PATH"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"anime", "broken_meta", "other/name", "pair.pt", "pair.safetensors", "style/name", "Painterly"}
    assert "anime.preview.png" in rows["anime"] and " 16 " in rows["anime"] and "KiB" in rows["anime"]
    assert rows["style/name"].split()[4] == "-"
    assert "warning: 2 files are named 'name'; tag them by these names instead: other/name, style/name" in captured.err
    assert "warning: 2 files are named 'pair'" in captured.err
    assert "broken_meta.json" in captured.err


def test_list_json(library_dir, capsys):
    assert main(["list", "--dir", str(library_dir), "--json", "--no-packaged"]) == 0
    data = json.loads(capsys.readouterr().out)
    by_tag = {entry["tag_name"]: entry for entry in data["entries"]}
    assert by_tag["Painterly"]["relative_name"] == "Zeta/deep/Painterly"
    assert by_tag["Painterly"]["description"] == "from json"
    assert by_tag["anime"]["sizes"] == [16] and len(by_tag["anime"]["short_hash"]) == 10
    assert any("'name'" in warning for warning in data["warnings"])


def test_list_of_an_empty_folder(tmp_path, capsys):
    assert main(["list", "--dir", str(tmp_path), "--no-packaged"]) == 0
    assert "no hypernetworks in" in capsys.readouterr().out


def test_fresh_library_lists_the_packaged_demo_networks_marked(tmp_path, capsys):
    """`<hypernet:water:1>` works on a fresh clone, so `hypernet list` must show it."""
    assert main(["list", "--dir", str(tmp_path)]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert sorted(" ".join(row.split()[:2]) for row in rows) == ["neon (packaged)", "water (packaged)"]
    assert main(["list", "--dir", str(tmp_path), "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)["entries"]
    assert {(e["name"], e["packaged"]) for e in entries} == {("neon", True), ("water", True)}


def test_own_network_shadows_the_packaged_one_and_is_not_marked(tmp_path, capsys):
    import shutil

    shutil.copy(Path(__file__).resolve().parents[2] / "src/hypernet/data/hypernetworks/water.pt", tmp_path / "water.pt")
    assert main(["list", "--dir", str(tmp_path), "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)["entries"]
    water = [e for e in entries if e["tag_name"] == "water"]
    assert len(water) == 1 and water[0]["packaged"] is False and water[0]["path"] == str(tmp_path / "water.pt")


def test_these_modules_import_neither_torch_nor_diffusers():
    code = (
        "import sys, hypernet.library, hypernet.infotext, hypernet.grid, hypernet.cli.library; "
        "print(sorted(m for m in ('torch', 'diffusers') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
