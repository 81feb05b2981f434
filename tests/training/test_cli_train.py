"""`hypernet train`: the face over `hypernet.training.train`."""

import datetime
import os
import signal
import threading

import pytest

import hypernet
from hypernet import loading
from hypernet.cli import main

from .conftest import make_dataset, new_network


@pytest.fixture
def cli_setup(tmp_path, pipe, monkeypatch):
    monkeypatch.setattr(loading, "load_pipeline_for", lambda model, **options: pipe)
    folder = make_dataset(tmp_path / "data")
    library = tmp_path / "hypernetworks"
    hypernet.save(new_network(), library / "tiny.pt")
    return tmp_path, folder, library


def arguments(tmp_path, folder, library, *extra):
    return ["train", "tiny", "--data", str(folder), "--hypernet-dir", str(library), "--size", "16x16",
            "--lr", "1e-3:3", "--seed", "4", "--log-dir", str(tmp_path / "logs"), "--quiet", *extra]


def test_train_a_library_network_and_continue_it(cli_setup, capsys):
    tmp_path, folder, library = cli_setup
    code = main(arguments(tmp_path, folder, library, "--save-every", "2", "--preview-every", "0", "--tensorboard"))
    assert code == 0
    output = capsys.readouterr()
    assert "finished: step 0 -> 3" in output.out
    assert "TensorBoard" in output.err or "tensorboard" in output.err.lower()
    assert hypernet.load(library / "tiny.pt").step == 3
    assert (library / "tiny.pt.optim").exists() and (library / "tiny.pt.train.json").exists()
    run = tmp_path / "logs" / datetime.date.today().isoformat() / "tiny"
    assert sorted(p.name for p in (run / "hypernetworks").glob("*.pt")) == ["tiny-2.pt", "tiny-3.pt"]
    assert (run / "settings.json").exists() and (run / "hypernetwork_loss.csv").exists()
    # the schedule now ends where the network is: nothing to do
    assert main(arguments(tmp_path, folder, library)) == 0
    assert "nothing to do" in capsys.readouterr().err
    # a longer schedule continues from the file's own side-cars, in the same run folder
    assert main(arguments(tmp_path, folder, library, "--lr", "1e-3:5", "--preview-every", "0")) == 0
    assert "finished: step 3 -> 5" in capsys.readouterr().out
    assert hypernet.load(library / "tiny.pt").step == 5
    assert (run / "hypernetworks" / "tiny-5.pt").exists()


def test_bad_input_exits_2_with_the_message_and_writes_nothing(cli_setup, capsys):
    tmp_path, folder, library = cli_setup
    before = (library / "tiny.pt").read_bytes()
    assert main(arguments(tmp_path, tmp_path / "missing", library)) == 2
    assert "dataset folder does not exist" in capsys.readouterr().err
    assert main(arguments(tmp_path, folder, library, "--lr", "1e-3:x")) == 2
    assert "at character 6" in capsys.readouterr().err
    assert main(arguments(tmp_path, folder, library, "--template", "nope")) == 2
    assert "template 'nope' not found" in capsys.readouterr().err
    assert main(["train", "absent", "--data", str(folder), "--hypernet-dir", str(library)]) == 2
    assert "no hypernetwork named 'absent'" in capsys.readouterr().err
    assert not (tmp_path / "logs").exists() and (library / "tiny.pt").read_bytes() == before


@pytest.fixture
def terminal_sigint():
    """Ctrl-C as in a terminal (a background job of a shell starts with SIGINT ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_first_ctrl_c_stops_after_the_step_and_saves_exit_130(cli_setup, capsys, monkeypatch, terminal_sigint):
    from hypernet.training import loss as loss_module

    tmp_path, folder, library = cli_setup
    real, calls = loss_module.diffusion_loss, []

    def pressed_at_the_second_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(loss_module, "diffusion_loss", pressed_at_the_second_step)
    assert main(arguments(tmp_path, folder, library, "--lr", "1e-3:50", "--preview-every", "0")) == 130
    output = capsys.readouterr()
    assert "interrupted: step 0 -> 2" in output.out and "press Ctrl-C again" in output.err
    assert hypernet.load(library / "tiny.pt").step == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is gone again


def test_second_ctrl_c_interrupts_at_once(terminal_sigint):
    from hypernet.cli.train import signals_stop

    stop, said = threading.Event(), []
    with signals_stop(stop, said.append):
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.is_set() and said
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_ignored_sigint_stays_ignored():
    from hypernet.cli.train import signals_stop

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with signals_stop(threading.Event()):
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
