"""`kill -9` of `hypernet train` at seeded random moments (start-up, between steps, during
each file of a checkpoint, during the final save), each followed by the same command again
or by `--resume` of the last checkpoint: no file is ever corrupt, no save is lost, no
temporary file is left, and the run ends exactly as an uninterrupted one.

Each `hypernet train` is a real process killed by SIGKILL. Starting Python with torch and
diffusers takes about 15 s on the test machine, so one helper process loads them and the
embedded toy model once and forks a child per command, which runs the CLI's `main` as the
`hypernet` command would (the model loader hands it the loaded toy pipeline). The child
kills itself at the chosen moment through the `HYPERNET_TEST_KILL_AT` hook
(`hypernet.fileio.kill_point`). HYPERNET_KILL_SEED=N picks other moments.
"""

import csv
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hypernet
from hypernet.training.checkpoints import read_resume_point

from .conftest import make_dataset

FORK_SERVER = r"""
import json, os, sys, traceback
import torch
torch.set_num_threads(1)
from hypernet import loading
from hypernet.cli import main
from hypernet.cli.defaults import toy_model_loader
import hypernet.training.trainer, accelerate  # loaded once, shared by every child
pipe = loading.load_pipeline_for(None, device="cpu", default_model=toy_model_loader(), progress=False)
loading.load_pipeline_for = lambda *args, **options: pipe
print("ready", flush=True)
for line in sys.stdin:
    job = json.loads(line)
    child = os.fork()
    if child == 0:
        log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.environ.pop("HYPERNET_TEST_KILL_AT", None)
        if job["kill_at"]:
            os.environ["HYPERNET_TEST_KILL_AT"] = job["kill_at"]
        os.chdir(job["cwd"])
        sys.argv = ["hypernet", *job["argv"]]
        try:
            code = main(job["argv"])
        except BaseException:
            traceback.print_exc()
            code = 99
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(child, 0)
    print(json.dumps({"signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                      "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None}), flush=True)
os._exit(0)  # no interpreter teardown: seconds saved
"""

END, SAVE_EVERY = 6, 2
# every moment a kill can hit, in the order a run meets them
MOMENTS = ["write:settings.json", "write:hypernetwork_loss.csv"]
for _step in range(END):
    MOMENTS.append(f"step:{_step}")
    if (_step + 1) % SAVE_EVERY == 0:
        MOMENTS += [f"write:tiny-{_step + 1}.pt{part}" for part in (".optim", ".train.json", "")]
FINAL_SAVE = ["write:tiny.pt.optim", "write:tiny.pt.train.json", "write:tiny.pt"]
MOMENTS += FINAL_SAVE


class Trainers:
    """`hypernet train` processes forked from one helper that has loaded everything."""

    def __init__(self, root: Path):
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
        self.root = root
        self.count = 0
        self.process = subprocess.Popen([sys.executable, "-c", FORK_SERVER], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env=environment)
        assert self.process.stdout.readline().strip() == "ready"

    def run(self, cwd: Path, argv: list[str], kill_at: str | None = None) -> tuple[int | None, int | None, str]:
        self.count += 1
        log = self.root / f"run-{self.count}.log"
        job = {"argv": argv, "cwd": str(cwd), "kill_at": kill_at, "log": str(log)}
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline())
        return answer["signal"], answer["code"], log.read_text(encoding="utf-8", errors="replace")

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)
        self.process.stdout.close()


@pytest.fixture(scope="module")
def trainers(tmp_path_factory):
    helper = Trainers(tmp_path_factory.mktemp("trainers"))
    yield helper
    helper.close()


def prepared(folder: Path) -> tuple[Path, list[str]]:
    from hypernet.network import Hypernetwork

    folder.mkdir(parents=True)
    make_dataset(folder / "data")
    hypernet.save(Hypernetwork.create(sizes=[80], generator_seed=0, name="tiny"), folder / "lib" / "tiny.pt")
    return folder, ["train", "tiny", "--data", "data", "--hypernet-dir", "lib", "--lr", f"1e-3:{END}", "--seed", "3",
                    "--save-every", str(SAVE_EVERY), "--preview-every", "0", "--log-dir", "logs", "--quiet"]


def weights(path: Path) -> dict:
    return hypernet.load(path).state_dict()


def same(first: dict, second: dict) -> bool:
    return first.keys() == second.keys() and all(torch.allclose(first[k], second[k], atol=1e-6, rtol=0) for k in first)


def losses(run_dir: Path) -> list[tuple[int, str]]:
    with open(run_dir / "hypernetwork_loss.csv", newline="") as stream:
        return [(int(row["step"]), row["loss"]) for row in csv.DictReader(stream)]


def check_nothing_corrupt(folder: Path, why: str) -> None:
    """The library file loads, at its first or its last step; every visible checkpoint loads
    and resumes exactly."""
    assert hypernet.load(folder / "lib" / "tiny.pt").step in (0, END), why
    for checkpoint in (folder / "logs").glob("*/*/hypernetworks/*.pt"):
        point = read_resume_point(checkpoint)
        assert point.exact, (why, checkpoint, point.notes)
        assert checkpoint.name == f"tiny-{point.network.step}.pt", why


def test_kill_9_at_random_moments_then_run_again_ends_as_an_uninterrupted_run(trainers, tmp_path):
    seed = int(os.environ.get("HYPERNET_KILL_SEED", "14"))
    chooser = random.Random(seed)
    ordinary = [m for m in MOMENTS if m not in FINAL_SAVE]
    kills = sorted(chooser.sample(ordinary, 4) + [chooser.choice(FINAL_SAVE)], key=MOMENTS.index)

    reference, argv = prepared(tmp_path / "reference")
    signal_number, code, output = trainers.run(reference, argv)
    assert (signal_number, code) == (None, 0), output
    expected_runs = list((reference / "logs").glob("*/tiny"))

    folder, argv = prepared(tmp_path / "killed")
    history = []
    for moment in [*kills, None]:
        visible = sorted((folder / "logs").glob("*/*/hypernetworks/*.pt"), key=lambda p: hypernet.load(p).step)
        again = argv + ["--resume", str(visible[-1].relative_to(folder))] if visible and chooser.random() < 0.5 else argv
        signal_number, code, output = trainers.run(folder, again, kill_at=moment)
        why = f"seed {seed}, kills {kills}, at {moment}, after {history}: {output}"
        history.append((moment, "--resume" in again))
        assert "Traceback" not in output, why
        if moment is None:
            assert (signal_number, code) == (None, 0), why
        else:
            assert signal_number == 9, why  # every chosen moment is met: each run continues where the last stopped
        check_nothing_corrupt(folder, why)

    why = f"seed {seed}, kills {kills}, runs {history}"
    runs = list((folder / "logs").glob("*/*"))
    assert [run.name for run in runs] == ["tiny"], why  # every run continued the one run folder
    run, expected = runs[0], expected_runs[0]
    assert same(weights(folder / "lib" / "tiny.pt"), weights(reference / "lib" / "tiny.pt")), why
    assert hypernet.load(folder / "lib" / "tiny.pt").step == END and read_resume_point(folder / "lib" / "tiny.pt").exact
    names = sorted(p.name for p in (run / "hypernetworks").iterdir())
    assert names == sorted(p.name for p in (expected / "hypernetworks").iterdir()), why  # no save lost, no stray file
    for step in range(SAVE_EVERY, END + 1, SAVE_EVERY):
        name = f"tiny-{step}.pt"
        assert same(weights(run / "hypernetworks" / name), weights(expected / "hypernetworks" / name)), (why, name)
    assert losses(run) == losses(expected) and [s for s, _ in losses(run)] == list(range(1, END + 1)), why
    leftovers = [p for p in folder.rglob(".*") if p.is_file()]
    assert not leftovers, (why, leftovers)
