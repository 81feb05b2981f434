"""Every write that fails (no permission, disk full, a file where a folder should be) is
a one-line `HypernetFileError` naming the path, never a traceback, and the input of a
conversion is never touched (issue 14). All writers go through `fileio.atomic_path`."""

import errno
import os
import tempfile

import pytest

import hypernet
from hypernet.cli import main
from hypernet.errors import HypernetFileError
from hypernet.fileio import atomic_path
from hypernet.network import Hypernetwork


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "in" / "small.pt"
    hypernet.save(Hypernetwork.create(sizes=[8], generator_seed=1), path)
    return path


def read_only(monkeypatch):
    """A read-only folder, also for root (who may write into a chmod 555 folder)."""

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", kwargs.get("dir"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)


def disk_full(monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)


def one_line_error(capsys, *words):
    error = capsys.readouterr().err
    assert "Traceback" not in error, error
    last = error.rstrip("\n").rpartition("\n")[2].rpartition("\r")[2]  # after any progress bar
    assert last.startswith("hypernet ") and ": error: " in last, error
    for word in words:
        assert word in last, error
    return last


@pytest.mark.parametrize("break_it, reason", [(read_only, "Permission denied"), (disk_full, "No space left")])
def test_convert_names_the_target_and_leaves_the_input_intact(tmp_path, source, capsys, monkeypatch, break_it, reason):
    before = source.read_bytes()
    target = tmp_path / "out" / "small.safetensors"
    break_it(monkeypatch)
    assert main(["convert", str(source), str(target)]) == 2
    one_line_error(capsys, f"{target}: cannot be written ({reason}", "hypernet convert: error:")
    assert source.read_bytes() == before and not target.exists()
    assert sorted(p.name for p in source.parent.iterdir()) == ["small.pt"]
    if (tmp_path / "out").exists():
        assert not list((tmp_path / "out").iterdir())  # no temporary left behind


def test_a_file_where_a_folder_should_be_is_named(tmp_path, source, capsys):
    (tmp_path / "blocker").write_text("a file, not a folder")
    target = tmp_path / "blocker" / "sub" / "small.pt"
    assert main(["convert", str(source), str(target)]) == 2
    one_line_error(capsys, f"{target}: cannot be written (", "blocker")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_really_read_only_folder(tmp_path, source, capsys):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert main(["convert", str(source), str(folder / "x.pt")]) == 2
        one_line_error(capsys, "Permission denied")
    finally:
        folder.chmod(0o755)


def test_save_and_create_name_the_file(tmp_path, capsys, monkeypatch):
    (tmp_path / "blocker").write_text("")
    with pytest.raises(HypernetFileError, match="blocker"):
        hypernet.save(Hypernetwork.create(sizes=[8]), tmp_path / "blocker" / "n.safetensors")
    assert main(["create", "n", "--dir", str(tmp_path / "blocker" / "lib"), "--sizes", "8"]) == 2
    one_line_error(capsys, "n.pt: cannot be written")
    disk_full(monkeypatch)
    assert main(["create", "m", "--dir", str(tmp_path / "lib"), "--sizes", "8"]) == 2
    one_line_error(capsys, "m.pt: cannot be written (No space left on device)")
    assert not list((tmp_path / "lib").iterdir())


@pytest.mark.needs_toy_model
def test_generate_and_grid_outputs_name_the_path(tmp_path, capsys):
    (tmp_path / "blocker").write_text("")
    common = ["--steps", "1", "--size", "32x32", "--quiet", "--hypernet-dir", str(tmp_path / "library")]
    assert main(["generate", "a cat", "--out", str(tmp_path / "blocker" / "out"), *common]) == 2
    one_line_error(capsys, "blocker")
    grid = ["grid", "a cat", "--hypernet", "water", "--multipliers", "0,1", "--output",
            str(tmp_path / "blocker" / "grid.png"), *common]
    assert main(grid) == 2
    one_line_error(capsys, "grid.png: cannot be written")


def test_the_helper_turns_any_os_error_into_one_naming_the_file(tmp_path):
    target = tmp_path / "a.bin"
    with pytest.raises(HypernetFileError) as error:
        with atomic_path(target) as temporary:
            raise OSError(errno.EIO, "Input/output error", str(temporary))
    assert str(error.value) == f"{target}: cannot be written (Input/output error)"
    assert not list(tmp_path.iterdir())
