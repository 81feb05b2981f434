"""`hypernet generate` from the command line, on the embedded toy model."""

import pytest

from hypernet.cli import main
from hypernet.infotext import read_png_infotext

pytestmark = pytest.mark.needs_toy_model


def test_several_prompts_in_one_run_each_get_a_png_with_its_infotext(tmp_path, capsys):
    out = tmp_path / "out"
    prompts = ["a red circle on a blue background", "a red circle on a blue background <hypernet:water:0.7>"]
    code = main(["generate", *prompts, "--seed", "1", "--steps", "4", "--quiet", "--out", str(out),
                 "--hypernet-dir", str(tmp_path / "empty-library")])
    assert code == 0
    written = sorted(out.glob("*.png"))
    assert len(written) == 2 and len(capsys.readouterr().out.splitlines()) == 2
    first, second = (read_png_infotext(path) for path in written)
    assert first.startswith(prompts[0] + "\n") and "Seed: 1," in first and "Hypernet" not in first
    assert "<hypernet:water:0.7>" in second and "Seed: 1," in second


def test_no_prompt_is_a_clear_error(capsys):
    assert main(["generate"]) == 2
    assert "PROMPT" in capsys.readouterr().err


def generate_args(out, *more):
    return ["generate", "a red circle on a blue background", "--seed", "1", "--steps", "2", "--size", "32x32",
            "--quiet", "--out", str(out), "--hypernet-dir", str(out.parent / "empty-library"), *more]


def stop_during_batch(monkeypatch, batch: int, action):
    """Run `action` (a Ctrl-C) while batch number `batch` (0-based) is being sampled."""
    from hypernet.generation import Generator

    original = Generator._batch
    calls = []

    def sample(self, *args, **kwargs):
        calls.append(1)
        result = original(self, *args, **kwargs)
        if len(calls) == batch + 1:
            action()
        return result

    monkeypatch.setattr(Generator, "_batch", sample)
    return calls


def test_each_image_is_on_disk_as_soon_as_it_is_made_and_a_kill_keeps_them(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"

    def killed():  # a second Ctrl-C (or a kill) while the second image is sampled
        assert len(list(out.glob("*.png"))) == 1  # the first image is already written
        raise KeyboardInterrupt

    stop_during_batch(monkeypatch, 1, killed)
    assert main(generate_args(out, "--batch-count", "5")) == 130
    captured = capsys.readouterr()
    assert len(list(out.glob("*.png"))) == 1 and len(captured.out.splitlines()) == 1
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left
    assert "interrupted; 1 image written to" in captured.err and "Traceback" not in captured.err


def test_ctrl_c_stops_after_the_image_in_progress_and_says_how_many_were_written(tmp_path, capsys, monkeypatch,
                                                                                 terminal_sigint):
    import os
    import signal

    out = tmp_path / "out"
    calls = stop_during_batch(monkeypatch, 1, lambda: os.kill(os.getpid(), signal.SIGINT))
    assert main(generate_args(out, "--batch-count", "1000")) == 130
    assert len(calls) == 2  # no batch started after the Ctrl-C
    written = sorted(out.glob("*.png"))
    assert len(written) == 2  # the image in progress was finished and written
    assert read_png_infotext(written[1]).count("Seed: 2,") == 1 and "Interrupted" not in read_png_infotext(written[1])
    error = capsys.readouterr().err
    assert "stopping after the image in progress" in error and "interrupted; 2 images written to" in error
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
