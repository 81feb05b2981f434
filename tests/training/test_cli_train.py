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
    assert main(["train", str(tmp_path / "absent.pt"), "--data", str(folder), "--hypernet-dir", str(library)]) == 2
    assert "absent.pt does not exist" in capsys.readouterr().err
    assert main(["train", "absent", "--data", str(tmp_path / "missing"), "--hypernet-dir", str(library)]) == 2
    assert "dataset folder does not exist" in capsys.readouterr().err
    assert not (tmp_path / "logs").exists() and (library / "tiny.pt").read_bytes() == before
    assert sorted(p.name for p in library.iterdir()) == ["tiny.pt"]


def test_a_new_name_trains_a_new_network_for_the_model(cli_setup, pipe, capsys):
    from hypernet.attention import attention_widths

    tmp_path, folder, library = cli_setup
    command = arguments(tmp_path, folder, library, "--save-every", "0", "--preview-every", "0")
    command[1] = "tiy"  # a typo of 'tiny': said, and a new network is trained under the name given
    assert main(command) == 0
    err = capsys.readouterr().err
    assert "no hypernetwork 'tiy'" in err and "a typo? the library has: tiny" in err and "ZeroLast init" in err
    trained = hypernet.load(library / "tiy.pt")
    assert trained.step == 3 and trained.sizes == attention_widths(pipe.unet)
    assert trained.metadata.weight_initialization == "ZeroLast" and trained.structure.layer_structure == (1, 2, 1)
    command[1] = "webuilike"
    assert main(command + ["--webui-defaults"]) == 0
    assert "Normal init" in capsys.readouterr().err
    assert hypernet.load(library / "webuilike.pt").metadata.weight_initialization == "Normal"
    # --new: a new network even where the library has one (here the package's demo `water`) ...
    command[1] = "water"
    assert main(command + ["--new"]) == 0
    assert hypernet.load(library / "water.pt").step == 3 and "training a new one" not in capsys.readouterr().err
    # ... but never over a file of the library folder
    before = (library / "water.pt").read_bytes()
    assert main(command + ["--new"]) == 2
    assert "water.pt exists; remove it or choose another name" in capsys.readouterr().err
    assert (library / "water.pt").read_bytes() == before


def test_webui_defaults_preset_and_flags_win(tmp_path):
    import argparse

    from hypernet.cli import train as train_cli
    from hypernet.training.config import TrainingConfig
    from hypernet.training.defaults import WEBUI_TRAINING

    parser = argparse.ArgumentParser()
    train_cli.register(parser.add_subparsers())

    def config(*extra):
        return train_cli.config_from_args(parser.parse_args(["train", "x", "--data", str(tmp_path), *extra]))

    ours, theirs = config(), config("--webui-defaults")
    assert ours == TrainingConfig(data=str(tmp_path))
    for name in train_cli.PRESET_OPTIONS:
        assert getattr(theirs, name) == WEBUI_TRAINING[name], name
    assert (theirs.learning_rate, theirs.batch_size, theirs.max_steps) == ("0.00001", 1, 100000)
    assert ours.learning_rate != theirs.learning_rate and ours.max_steps < 100000
    mixed = config("--webui-defaults", "--lr", "2e-4", "--batch-size", "3", "--caption-dropout", "0.2")
    assert (mixed.learning_rate, mixed.batch_size, mixed.caption_dropout, mixed.max_steps) == ("2e-4", 3, 0.2, 100000)


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
