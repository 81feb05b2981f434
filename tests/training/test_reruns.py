"""Kills, re-runs and resume through `hypernet train` (docs/training.md): a run killed at
any moment is finished by the same command or by `--resume`; no run overwrites another's
files; a visible checkpoint always has its side-cars; non-finite weights and unwritable
outputs never cost the user's network. A kill is simulated in-process by an exception
that nothing catches (`Killed`), raised at the moment a SIGKILL would land."""

import csv
import datetime
import os

import pytest
import torch

import hypernet
from hypernet import loading
from hypernet.cli import main
from hypernet.training import loss as loss_module
from hypernet.training.checkpoints import read_resume_point, save_checkpoint

from .conftest import make_dataset, new_network


class Killed(BaseException):
    """What SIGKILL does to a run: nothing after it runs, no save, no clean-up handler."""


@pytest.fixture
def setup(tmp_path, pipe, monkeypatch):
    monkeypatch.setattr(loading, "load_pipeline_for", lambda model, **options: pipe)
    monkeypatch.chdir(tmp_path)
    make_dataset(tmp_path / "data")
    hypernet.save(new_network(), tmp_path / "lib" / "tiny.pt")
    return tmp_path


def command(*extra, lr="1e-3:4"):
    return ["train", "tiny", "--data", "data", "--hypernet-dir", "lib", "--size", "16x16", "--lr", lr, "--seed", "4",
            "--save-every", "2", "--preview-every", "0", "--log-dir", "logs", "--quiet", *extra]


def run_folder(root, name="tiny"):
    return root / "logs" / datetime.date.today().isoformat() / name


def kill_at_step(monkeypatch, step: int):
    """Killed while computing step `step` (its loss)."""
    real, calls = loss_module.diffusion_loss, []

    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == step:
            raise Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(loss_module, "diffusion_loss", dying)


def kill_at_rename(monkeypatch, name: str, folder=None):
    """Killed just before the file `name` (in `folder`) replaces its old version."""
    real = os.replace

    def dying(source, target, *args, **kwargs):
        if os.path.basename(target) == name and (folder is None or os.path.dirname(os.path.abspath(target)) == str(folder)):
            raise Killed
        return real(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "replace", dying)


def steps_logged(folder):
    with open(folder / "hypernetwork_loss.csv", newline="") as stream:
        return [int(row["step"]) for row in csv.DictReader(stream)]


def reference_weights(tmp_path, pipe, monkeypatch, lr="1e-3:4"):
    """The library file after an uninterrupted run of `command()`."""
    other = tmp_path / "reference"
    other.mkdir()
    monkeypatch.chdir(other)
    make_dataset(other / "data")
    hypernet.save(new_network(), other / "lib" / "tiny.pt")
    assert main(command(lr=lr)) == 0
    monkeypatch.chdir(tmp_path)
    return hypernet.load(other / "lib" / "tiny.pt").state_dict()


def same(first, second) -> bool:
    return first.keys() == second.keys() and all(torch.allclose(first[k], second[k], atol=1e-6, rtol=0) for k in first)


@pytest.mark.parametrize("again", ["--resume", "same command"])
def test_killed_during_the_final_save_then_resume_or_rerun_finishes_it(setup, monkeypatch, capsys, again):
    tmp_path = setup
    library = tmp_path / "lib" / "tiny.pt"
    with monkeypatch.context() as patch:
        kill_at_rename(patch, "tiny.pt", folder=library.parent)
        with pytest.raises(Killed):
            main(command())
    last = run_folder(tmp_path) / "hypernetworks" / "tiny-4.pt"
    assert read_resume_point(last).exact and hypernet.load(library).step == 0
    capsys.readouterr()
    assert main(command("--resume", str(last)) if again == "--resume" else command()) == 0
    output = capsys.readouterr()
    assert "did not hold step 4" in output.err and "finished: step 4 -> 4" in output.out
    assert hypernet.load(library).step == 4 and read_resume_point(library).exact
    assert same(hypernet.load(library).state_dict(), hypernet.load(last).state_dict())
    assert main(command()) == 0 and "nothing to do" in capsys.readouterr().err  # and now it is done


def test_the_same_command_after_a_kill_continues_the_run_from_its_last_checkpoint(setup, pipe, monkeypatch, capsys):
    tmp_path = setup
    with monkeypatch.context() as patch:
        kill_at_step(patch, 4)  # steps 1-3 done and logged, checkpoint 2 written
        with pytest.raises(Killed):
            main(command())
    folder = run_folder(tmp_path)
    checkpoint = (folder / "hypernetworks" / "tiny-2.pt").read_bytes()
    assert main(command()) == 0
    output = capsys.readouterr()
    assert "continuing the unfinished run" in output.err and "tiny-2.pt" in output.err
    assert "finished: step 2 -> 4" in output.out
    assert (folder / "hypernetworks" / "tiny-2.pt").read_bytes() == checkpoint  # never rewritten
    assert steps_logged(folder) == [1, 2, 3, 4]
    assert [p.name for p in folder.parent.iterdir()] == ["tiny"]
    assert same(hypernet.load(tmp_path / "lib" / "tiny.pt").state_dict(), reference_weights(tmp_path, pipe, monkeypatch))


def test_another_command_after_a_kill_goes_to_a_new_run_folder(setup, monkeypatch, capsys):
    tmp_path = setup
    with monkeypatch.context() as patch:
        kill_at_step(patch, 4)
        with pytest.raises(Killed):
            main(command())
    folder = run_folder(tmp_path)
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert main(command(lr="2e-3:4")) == 0
    assert "this run goes to" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before  # the killed run's files untouched
    new = run_folder(tmp_path, "tiny-2")
    assert steps_logged(new) == [1, 2, 3, 4] and (new / "hypernetworks" / "tiny-4.pt").exists()


@pytest.mark.parametrize("dies_at", ["tiny-2.pt", "tiny-2.pt.optim", "tiny-2.pt.train.json"])
def test_a_visible_checkpoint_always_has_its_side_cars(tmp_path, monkeypatch, dies_at):
    path = tmp_path / "tiny-2.pt"
    network = new_network()
    optimizer = torch.optim.AdamW(network.parameters())
    kill_at_rename(monkeypatch, dies_at)
    with pytest.raises(Killed):
        save_checkpoint(network, path, optimizer, {"step": 2, "position": 2, "seed": 0})
    assert not path.exists() or read_resume_point(path).exact


def test_temporary_files_of_killed_saves_are_removed_on_start(setup, capsys):
    tmp_path = setup
    folder = run_folder(tmp_path)
    (folder / "hypernetworks").mkdir(parents=True)
    stale = [folder / "hypernetworks" / ".tiny-2.pt.k3j4h5g6.tmp", folder / "hypernetworks" / "..tiny-2.pt.a.tmp.b.tmp",
             folder / ".hypernetwork_loss.csv.x1y2z3w4.tmp", tmp_path / "lib" / ".tiny.pt.optim.q1w2e3r4.tmp",
             folder / "hypernetworks" / "tiny-6.pt.optim"]  # a side-car whose checkpoint never appeared
    kept = [tmp_path / "lib" / ".other.pt.q1w2e3r4.tmp", tmp_path / "lib" / ".keep"]
    for path in stale + kept:
        path.write_bytes(b"half")
    assert main(command()) == 0
    assert "removed 5 files left by an interrupted save" in capsys.readouterr().err
    assert not any(path.exists() for path in stale) and all(path.exists() for path in kept)


def test_non_finite_weights_are_never_saved_and_the_last_finite_checkpoint_is_named(setup, capsys):
    tmp_path = setup
    library = tmp_path / "lib" / "tiny.pt"
    before = library.read_bytes()
    assert main(command(lr="1e-3:2, 1e308:6")) == 1
    output = capsys.readouterr()
    assert "Traceback" not in output.err and "non-finite weights: step 0 -> 3" in output.out
    last = run_folder(tmp_path) / "hypernetworks" / "tiny-2.pt"
    assert f"the last finite checkpoint is {last.relative_to(tmp_path)} (step 2)" in output.err and "lower the learning rate" in output.err
    assert library.read_bytes() == before
    assert sorted(p.name for p in last.parent.iterdir() if p.suffix == ".pt") == ["tiny-2.pt"]
    assert main(["inspect", str(library)]) == 0 and main(["inspect", str(last)]) == 0
    assert main(command(lr="1e308")) == 1  # diverged at the first step: the network's own file is what is left
    assert "the last finite checkpoint is lib/tiny.pt (step 0)" in capsys.readouterr().err
    assert library.read_bytes() == before


@pytest.mark.parametrize("where", ["a file in the way", "a read-only folder", "run folder"])
def test_unwritable_outputs_are_refused_before_the_first_step(setup, monkeypatch, capsys, where):
    tmp_path = setup
    (tmp_path / "plain-file").write_text("not a folder")
    if where == "a file in the way":
        extra, named = ["--output", "plain-file/out.pt"], "plain-file"
    else:
        (tmp_path / "locked").mkdir()
        real = os.access
        monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if str(path).endswith("locked")
                            else real(path, mode, **kw))  # as chmod 555 would for a user other than root
        extra = ["--output", "locked/out.pt"] if where == "a read-only folder" else ["--log-dir", "locked/logs"]
        named = "locked"
    before = (tmp_path / "lib" / "tiny.pt").read_bytes()
    assert main(command(*extra)) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and named in error and "cannot be written" in error and "Traceback" not in error
    assert not (tmp_path / "logs").exists() and (tmp_path / "lib" / "tiny.pt").read_bytes() == before


@pytest.mark.parametrize("given, processes, continued, expected, said", [
    (1, 1, (1, 2), 2, "1 process each takes 2, so the global batch stays 2"),
    (2, 2, (2, 1), 1, "2 processes each takes 1, so the global batch stays 2"),
    (4, 8, (4, 2), 1, "8 processes each takes 1, so the global batch stays 8"),
    (1, 2, (1, 2), 1, None),  # the same process count: nothing to share out
    (3, 1, (1, 2), 3, None),  # another batch size given: kept, the plan's fingerprint check says what changed
    (1, 2, (1, 3), 1, "which 2 processes cannot share evenly; each takes 1, a global batch of 2"),
])
def test_a_run_continued_with_another_process_count_keeps_its_global_batch(given, processes, continued, expected, said):
    from hypernet.training.plan import _batch_for

    messages = []
    assert _batch_for(given, processes, continued, messages) == expected
    assert messages == [] if said is None else said in messages[0], messages
