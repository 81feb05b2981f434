import json
import os

import pytest

import hypernet
from hypernet.errors import HypernetError, HypernetFileError
from hypernet.library import AmbiguousNameError, Library, LibraryEntry, UnknownNameError

from .conftest import make_network


def test_scan_lists_pt_and_safetensors_recursively_sorted_by_lowercased_relative_path(library_dir):
    library = Library(library_dir)
    relative = [entry.relative_file for entry in library.entries()]
    assert relative == [
        "anime.pt",
        "broken_meta.pt",
        "other/name.safetensors",
        "pair.pt",
        "pair.safetensors",
        "style/name.pt",
        "Zeta/deep/Painterly.pt",
    ]
    # None.pt, the .optim side-car, text files and hidden folders are not listed
    assert "None" not in [entry.name for entry in library]
    painterly = library.resolve("Painterly")
    assert isinstance(painterly, LibraryEntry)
    assert painterly.relative_name == "Zeta/deep/Painterly" and painterly.format == "pt"
    assert painterly.path == library_dir / "Zeta" / "deep" / "Painterly.pt"
    assert painterly.size_bytes == painterly.path.stat().st_size
    assert painterly.mtime == painterly.path.stat().st_mtime
    assert library.resolve("other/name").format == "safetensors"


def test_hidden_folders_are_listed_on_request(library_dir):
    assert "secret" in [entry.name for entry in Library(library_dir, include_hidden=True)]


def test_previews_descriptions_and_user_metadata(library_dir):
    library = Library(library_dir)
    anime = library.resolve("anime")
    assert anime.preview == library_dir / "anime.preview.png"
    assert anime.description == "from the txt file"
    assert anime.user_metadata == {}
    other = library.resolve("other/name")
    assert other.preview == library_dir / "other" / "name.jpg"
    assert other.description == "caf\ufffd \ufffd"  # UTF-8 with errors replaced
    painterly = library.resolve("Painterly")
    assert painterly.description == "from json"  # the JSON's description wins over the .txt
    assert painterly.user_metadata == {"description": "from json", "notes": "n"}
    assert library.resolve("style/name").preview is None and library.resolve("style/name").description is None


def test_preview_order_plain_before_preview_suffix_and_png_first(tmp_path):
    root = tmp_path / "lib"
    make_network(root / "a.pt")
    (root / "a.preview.png").write_bytes(b"1")
    (root / "a.png").write_bytes(b"2")
    (root / "a.jpg").write_bytes(b"3")
    make_network(root / "b.pt")
    (root / "b.jpg").write_bytes(b"1")
    (root / "b.preview.png").write_bytes(b"2")
    make_network(root / "c.pt")
    (root / "c.preview.webp").write_bytes(b"1")
    library = Library(root)
    assert library.resolve("a").preview.name == "a.png"
    assert library.resolve("b").preview.name == "b.preview.png"
    assert library.resolve("c").preview.name == "c.preview.webp"


def test_broken_user_metadata_is_a_warning_not_a_crash(library_dir):
    library = Library(library_dir)
    entry = library.resolve("broken_meta")
    assert entry.user_metadata == {} and entry.description is None
    assert any(warning.path == library_dir / "broken_meta.json" and "not valid JSON" in warning.message for warning in library.warnings)


def test_same_base_name_in_two_folders_is_ambiguous_and_both_stay_addressable(library_dir):
    library = Library(library_dir)
    with pytest.raises(AmbiguousNameError) as caught:
        library.resolve("name")
    message = str(caught.value)
    assert "other/name" in message and "style/name" in message
    assert {entry.relative_name for entry in caught.value.candidates} == {"other/name", "style/name"}
    assert library.resolve("style/name").path == library_dir / "style" / "name.pt"
    assert library.resolve("other/name").path == library_dir / "other" / "name.safetensors"
    assert library.resolve("style\\name").relative_name == "style/name"
    assert sorted(library.ambiguities()) == ["name", "pair"]


def test_pt_and_safetensors_with_one_stem_are_ambiguous_until_the_extension_is_given(library_dir):
    library = Library(library_dir)
    with pytest.raises(AmbiguousNameError, match="pair.pt.*pair.safetensors"):
        library.resolve("pair")
    assert library.resolve("pair.safetensors").format == "safetensors"
    assert library.resolve("pair.pt").format == "pt"
    assert library.tag_name("pair.pt") == "pair.pt"


def test_an_exact_relative_name_beats_a_base_name(tmp_path):
    root = tmp_path / "lib"
    make_network(root / "x.pt")
    make_network(root / "sub" / "x.pt")
    library = Library(root)
    assert library.resolve("x").path == root / "x.pt"
    assert library.resolve("sub/x").path == root / "sub" / "x.pt"
    assert library.tag_name("sub/x") == "sub/x"
    assert list(library.ambiguities()) == ["x"]  # still reported


def test_unknown_names_suggest_the_closest(library_dir):
    library = Library(library_dir)
    with pytest.raises(UnknownNameError) as caught:
        library.resolve("anmie")
    assert "anime" in caught.value.suggestions and "closest names: anime" in str(caught.value)
    with pytest.raises(UnknownNameError) as caught:
        library.resolve("painterly")  # names are case-sensitive, as in the webui
    assert caught.value.suggestions[0] == "Painterly"
    with pytest.raises(UnknownNameError, match="available: anime"):
        library.resolve("qqqqqqqqqqqq")
    assert isinstance(caught.value, HypernetError)


def test_empty_or_missing_folder(tmp_path):
    library = Library(tmp_path / "missing")
    assert library.entries() == []
    assert "does not exist" in str(library.warnings[0])
    with pytest.raises(UnknownNameError, match="holds no .pt or .safetensors"):
        library.resolve("x")


def test_extra_roots_are_listed_and_a_new_file_is_found_without_refresh(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    make_network(first / "one.pt")
    library = Library(first, extra_roots=[second])
    assert [entry.name for entry in library] == ["one"]
    make_network(second / "two.pt")
    assert library.resolve("two").root == second  # an unknown name rescans once
    assert len(library) == 2


def test_the_users_folder_shadows_an_extra_root(tmp_path):
    user, packaged = tmp_path / "user", tmp_path / "packaged"
    make_network(user / "water.pt")
    make_network(packaged / "water.pt")
    make_network(packaged / "neon.pt")
    library = Library(user, extra_roots=[packaged])
    assert library.resolve("water").path == user / "water.pt"
    assert library.resolve("neon").path == packaged / "neon.pt"


def test_the_same_folder_given_twice_is_one_root(tmp_path, monkeypatch):
    make_network(tmp_path / "lib" / "one.pt")
    monkeypatch.chdir(tmp_path)
    library = Library("lib", extra_roots=[tmp_path / "lib"])
    assert library.resolve("one").path.name == "one.pt"  # not "ambiguous"
    assert len(library.roots) == 1


def test_prompt_tags_use_the_relative_name_only_when_needed(library_dir):
    library = Library(library_dir)
    assert library.prompt_tag("anime") == "<hypernet:anime:1>"  # as the webui's cards write it
    assert library.prompt_tag("anime", 0.7) == "<hypernet:anime:0.7>"
    assert library.prompt_tag("style/name", 1) == "<hypernet:style/name:1>"
    assert library.prompt_tag("Zeta/deep/Painterly") == "<hypernet:Painterly:1>"


def test_load_caches_per_file_version_and_reloads_a_retrained_file(tmp_path):
    root = tmp_path / "lib"
    path = make_network(root / "live.pt", sizes=(16,), seed=1)
    library = Library(root)
    first = library.load("live")
    assert isinstance(first, hypernet.Hypernetwork) and first.sizes == [16]
    assert library.load("live") is first
    # re-trained in place (as training's final save does): new content, new size
    make_network(path, sizes=(16, 32), seed=2)
    second = library.load("live")
    assert second is not first and second.sizes == [16, 32]
    # same size, only the modification time differs: still reloaded
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert library.load("live") is not second
    # another Library object shares nothing
    assert Library(root).load("live") is not library.load("live")


def test_load_errors_name_the_file(tmp_path):
    root = tmp_path / "lib"
    (root).mkdir()
    (root / "junk.pt").write_bytes(b"garbage that is not a torch file")
    library = Library(root)
    with pytest.raises(HypernetFileError, match="junk.pt"):
        library.load("junk")
    info = library.info("junk")
    assert info["sizes"] is None and "junk.pt" in info["error"]
    path = make_network(root / "gone.pt")
    library.refresh()
    path.unlink()
    with pytest.raises(HypernetFileError, match="no longer exists"):
        library.load("gone")


def test_info_is_json_able_and_carries_the_short_hash(library_dir):
    library = Library(library_dir)
    info = library.info("other/name")
    json.dumps(info)
    assert info["name"] == "name" and info["relative_name"] == "other/name" and info["tag_name"] == "other/name"
    assert info["format"] == "safetensors" and info["sizes"] == [16] and info["error"] is None
    assert info["preview"] == str(library_dir / "other" / "name.jpg")
    assert info["short_hash"] == hypernet.fileio.short_hash(library_dir / "other" / "name.safetensors")
    assert info["prompt_tag"] == "<hypernet:other/name:1>"


def test_write_user_metadata_keeps_other_keys_and_updates_the_entry(library_dir):
    library = Library(library_dir)
    data = library.write_user_metadata("Painterly", description="new téxt")
    assert data == {"description": "new téxt", "notes": "n"}
    path = library_dir / "Zeta" / "deep" / "Painterly.json"
    text = path.read_text(encoding="utf-8")
    assert text == json.dumps(data, indent=4, ensure_ascii=False)
    assert library.resolve("Painterly").description == "new téxt"
    library.write_user_metadata("anime", notes="just notes")
    assert json.loads((library_dir / "anime.json").read_text(encoding="utf-8")) == {"notes": "just notes"}
    assert library.resolve("anime").description == "from the txt file"
    with pytest.raises(HypernetFileError, match="broken_meta.json"):
        library.write_user_metadata("broken_meta", description="x")
    assert (library_dir / "broken_meta.json").read_text(encoding="utf-8") == "{not json"
    assert not [p for p in library_dir.rglob(".*.tmp")]
