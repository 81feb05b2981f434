"""Prompts from a file (`hypernet.prompt_file`, `hypernet generate --from-file`): parsing,
resumable runs, and runs shared between processes."""

import json

import pytest

from hypernet import HypernetError
from hypernet.prompt_file import image_name, parse_prompt_file, plan, shard, shard_from_environment
from hypernet.request import Request

DEFAULTS = Request(prompt="", steps=20, cfg_scale=7.0, seed=1)


def test_plain_lines_are_prompts_and_blank_lines_are_skipped():
    lines = parse_prompt_file("a cat\n\n   \na dog <hypernet:water:0.5>\n", DEFAULTS)
    assert [(entry.line, entry.request.prompt) for entry in lines] == [(1, "a cat"), (4, "a dog <hypernet:water:0.5>")]
    assert all(entry.request.steps == 20 and entry.request.seed == 1 for entry in lines)


def test_option_lines_override_the_defaults_with_the_webui_keys():
    text = ('--prompt "a cat, sitting" --negative_prompt "blurry" --seed 5 --steps 10 --cfg_scale 6 '
            '--sampler_name "dpm++ 2m Karras" --width 64 --height 32 --batch_size 2 --n_iter 3\n'
            "--prompt a plain   dog --steps 3\n")
    first, second = (entry.request for entry in parse_prompt_file(text, DEFAULTS))
    assert (first.prompt, first.negative_prompt, first.seed, first.steps, first.cfg_scale) == ("a cat, sitting", "blurry", 5, 10, 6.0)
    assert (first.sampler, first.width, first.height, first.batch_size, first.batch_count) == ("DPM++ 2M Karras", 64, 32, 2, 3)
    assert (second.prompt, second.steps, second.seed, second.cfg_scale) == ("a plain dog", 3, 1, 7.0)  # the webui joins words


@pytest.mark.parametrize("line, message", [
    ("--prompt a --tiling true", "line 2: unknown option '--tiling'; valid options: --prompt, --negative_prompt"),
    ("--steps ten", "line 2: --steps 'ten' must be a whole number"),
    ("--cfg_scale", "line 2: --cfg_scale needs a value"),
    ('--prompt "unclosed', "line 2: cannot be split into options"),
    ("--sampler_name Eulr", "line 2: --sampler_name: unknown sampler 'Eulr'; valid names: Euler a"),
    ("--prompt a --n_iter 0", "line 2: batch count (n_iter) must be at least 1 (got 0)"),
    ("--prompt a stray", None),
])
def test_bad_option_lines_name_the_line_and_the_key(line, message):
    if message is None:
        assert parse_prompt_file(f"a\n{line}", DEFAULTS)[1].request.prompt == "a stray"
        return
    with pytest.raises(HypernetError) as caught:
        parse_prompt_file(f"first\n{line}\n", DEFAULTS, source="p.txt")
    assert str(caught.value).startswith("p.txt, ") and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_random_seeds_are_fixed_by_the_line_and_the_plan_by_the_file():
    text = "a cat\n--prompt a dog --batch_size 2 --n_iter 2\n"
    lines = parse_prompt_file(text, Request(prompt="", seed=-1))
    again = parse_prompt_file(text, Request(prompt="", seed=-1))
    assert [e.request.seed for e in lines] == [e.request.seed for e in again] and lines[0].request.seed != lines[1].request.seed
    items = plan(lines)
    dog = lines[1].request.seed
    assert [item.names for item in items] == [
        [image_name(1, 0, lines[0].request.seed)],
        [f"L0002-I00-{dog}.png", f"L0002-I01-{dog + 1}.png"], [f"L0002-I02-{dog + 2}.png", f"L0002-I03-{dog + 3}.png"]]
    assert [item.index for item in shard(items, 1, 2)] == [1]


def test_the_process_shard_comes_from_accelerate_or_torchrun_variables():
    assert shard_from_environment({}) == (0, 1)
    assert shard_from_environment({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == (3, 4)
    assert shard_from_environment({"LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}) == (1, 2)
    with pytest.raises(HypernetError, match="RANK=4 must be at least 0 and below WORLD_SIZE=4"):
        shard_from_environment({"RANK": "4", "WORLD_SIZE": "4"})


# -- runs on the embedded toy model -----------------------------------------------------
PROMPTS = """a red circle on a blue background

--prompt "a blue square on a red background" --seed 7 --batch_size 2
--prompt "a red circle on a blue background" --negative_prompt "blue" --seed 3 --cfg_scale 5 --n_iter 2
"""


def run_file(folder, out, monkeypatch, environment=None):
    from hypernet.cli import main

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in (environment or {}).items():
        monkeypatch.setenv(name, value)
    prompts = folder / "prompts.txt"
    prompts.write_text(PROMPTS)
    return main(["generate", "--from-file", str(prompts), "--seed", "1", "--steps", "2", "--size", "32x32", "--quiet",
                 "--out", str(out), "--hypernet-dir", str(folder / "empty-library")])


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """A one-process run of PROMPTS (made once for the module; tests copy it to change it)."""
    folder = tmp_path_factory.mktemp("single")
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert run_file(folder, folder / "out", monkeypatch) == 0
    return folder / "out"


EXPECTED = ["L0001-I00-1.png", "L0003-I00-7.png", "L0003-I01-8.png", "L0004-I00-3.png", "L0004-I01-4.png"]


@pytest.mark.needs_toy_model
def test_a_file_run_writes_named_images_and_an_index_and_a_rerun_skips_them(single, tmp_path, capsys, monkeypatch):
    import shutil

    from hypernet.infotext import parse_infotext, read_png_infotext

    out = tmp_path / "out"
    shutil.copytree(single, out)
    assert sorted(p.name for p in out.glob("*.png")) == EXPECTED
    records = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert [r["file"] for r in records] == EXPECTED
    assert [(r["line"], r["image"], r["seed"]) for r in records] == [(1, 0, 1), (3, 0, 7), (3, 1, 8), (4, 0, 3), (4, 1, 4)]
    for record in records:
        prompt, negative, parameters = parse_infotext(read_png_infotext(out / record["file"]))
        assert (prompt, negative, parameters["Seed"]) == (record["prompt"], record["negative_prompt"], record["seed"])
        assert (parameters["Steps"], parameters["CFG scale"], parameters["Size"]) == (2, record["cfg_scale"], "32x32")
    assert records[3]["negative_prompt"] == "blue" and records[3]["cfg_scale"] == 5.0

    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    (out / "L0004-I01-4.png").unlink()  # as if killed before the last image
    (out / "index.jsonl").unlink()
    assert run_file(tmp_path, out, monkeypatch) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [f"{out / 'L0004-I01-4.png'}  seed 4"]
    assert "skipped 4 images already in" in captured.err
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.png") if p.name != "L0004-I01-4.png"} == {
        k: v for k, v in before.items() if k != "L0004-I01-4.png"}
    assert [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()] == records

    assert run_file(tmp_path, out, monkeypatch) == 0
    assert "skipped 5 images" in capsys.readouterr().err


@pytest.mark.needs_toy_model
def test_every_line_is_checked_before_the_first_image(tmp_path, capsys):
    from hypernet.cli import main

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n\n--prompt \"a cat <hypernet:nosuch:1>\" --seed 2\n")
    code = main(["generate", "--from-file", str(prompts), "--steps", "2", "--size", "32x32", "--quiet",
                 "--out", str(tmp_path / "out"), "--hypernet-dir", str(tmp_path / "empty-library")])
    error = capsys.readouterr().err
    assert code == 2 and f"{prompts}, line 3: " in error and "nosuch" in error and len(error.splitlines()) == 1
    assert not list((tmp_path / "out").glob("*.png"))


@pytest.mark.needs_toy_model
def test_two_processes_make_the_same_files_pixels_and_index_as_one(single, tmp_path, capsys, monkeypatch):
    import numpy
    from PIL import Image

    shared = tmp_path / "shared"
    assert run_file(tmp_path, shared, monkeypatch, {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == 0
    mine = ["L0003-I00-7.png", "L0003-I01-8.png", "L0004-I01-4.png"]  # work items 1 and 3 (batches) of 0-3
    assert sorted(p.name for p in shared.glob("*.png")) == mine
    assert [json.loads(line)["file"] for line in (shared / "index.jsonl").read_text().splitlines()] == mine
    assert run_file(tmp_path, shared, monkeypatch, {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}) == 0
    assert "process 0 of 2: 2 images written" in capsys.readouterr().err
    assert sorted(p.name for p in shared.glob("*.png")) == EXPECTED
    assert (shared / "index.jsonl").read_text() == (single / "index.jsonl").read_text()
    for name in EXPECTED:
        assert numpy.array_equal(numpy.asarray(Image.open(single / name)), numpy.asarray(Image.open(shared / name)))


@pytest.mark.slow
@pytest.mark.needs_toy_model
def test_a_real_two_process_run_under_torchrun_matches_one_process(single, tmp_path):
    """`accelerate launch --multi_gpu` starts its processes the same way (torch.distributed.run);
    on CPUs accelerate runs one process unless given an MPI host file, so torchrun it is."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import hypernet

    (tmp_path / "prompts.txt").write_text(PROMPTS)
    environment = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")}
    source = str(Path(hypernet.__file__).resolve().parents[1])
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [source, environment.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "hypernet", "generate",
               "--from-file", "prompts.txt", "--seed", "1", "--steps", "2", "--size", "32x32", "--quiet", "--out", "out",
               "--hypernet-dir", "empty-library"]
    finished = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "process 0 of 2:" in finished.stderr and "process 1 of 2:" in finished.stderr
    out = tmp_path / "out"
    assert sorted(p.name for p in out.glob("*.png")) == EXPECTED
    assert (out / "index.jsonl").read_text() == (single / "index.jsonl").read_text()
    assert all((out / name).read_bytes() == (single / name).read_bytes() for name in EXPECTED)


def test_a_missing_file_or_a_mix_of_prompt_sources_is_a_one_line_error(tmp_path, capsys):
    from hypernet.cli import main

    assert main(["generate", "--from-file", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == f"hypernet generate: error: {tmp_path / 'nope.txt'}: cannot be read (No such file or directory)\n"
    assert main(["generate", "a cat", "--from-file", str(tmp_path / "nope.txt")]) == 2
    assert "not several" in capsys.readouterr().err
