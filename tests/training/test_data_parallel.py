"""Data-parallel training for real: `torchrun --nproc_per_node 2 -m hypernet train` on the
CPU (gloo) with batch b per process ends where one process with batch 2b ends (same seed,
same data order, per-example randomness keyed by the global position), and writes one run
folder with one set of checkpoint files. Before the fix, on a machine without CUDA each
process trained alone (accelerate formed no process group unless told cpu=True).

A run continued with another process count keeps its global batch (2 x 1 continued by one
process is 1 x 2, and the reverse), so it ends where the uninterrupted run ends; a worker
killed with SIGKILL ends the whole run within a bounded time, its checkpoints intact."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import hypernet

from .conftest import make_dataset, new_network

pytestmark = [pytest.mark.needs_toy_model, pytest.mark.slow]


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_processes_of_batch_one_equal_one_process_of_batch_two(tmp_path):
    from hypernet.cli import main

    data = make_dataset(tmp_path / "data", count=8)
    for library in ("single", "double"):
        (tmp_path / library).mkdir()
        hypernet.save(new_network(seed=3), tmp_path / library / "tiny.pt")
    common = ["--data", str(data), "--lr", "1e-3:4", "--seed", "7", "--quiet", "--save-every", "2"]
    assert main(["train", "tiny", "--hypernet-dir", str(tmp_path / "single"), "--batch-size", "2",
                 "--log-dir", str(tmp_path / "log-single"), *common]) == 0

    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
         "-m", "hypernet", "train", "tiny", "--hypernet-dir", str(tmp_path / "double"), "--batch-size", "1",
         "--log-dir", str(tmp_path / "log-double"), *common],
        capture_output=True, text=True, env=environment, cwd=tmp_path, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("finished:") == 1  # only the main process reports

    single = hypernet.load(tmp_path / "single" / "tiny.pt").state_dict()
    double = hypernet.load(tmp_path / "double" / "tiny.pt").state_dict()
    assert hypernet.load(tmp_path / "double" / "tiny.pt").step == 4
    for key in single:
        torch.testing.assert_close(double[key], single[key], rtol=0, atol=2e-4, msg=key)
    assert max((double[key] - new_network(seed=3).state_dict()[key]).abs().max() for key in double) > 1e-3  # it trained

    folders = [path for path in (tmp_path / "log-double").rglob("*") if path.is_dir() and (path / "hypernetworks").is_dir()]
    assert len(folders) == 1, folders
    written = sorted(path.name for path in (folders[0] / "hypernetworks").iterdir())
    assert written == ["tiny-2.pt", "tiny-2.pt.optim", "tiny-2.pt.train.json",
                       "tiny-4.pt", "tiny-4.pt.optim", "tiny-4.pt.train.json"]


END = 6
# one rank kills itself (SIGKILL, as `kill -9` would) at a moment of hypernet.fileio.kill_point,
# noting the time first
KILL_ONE_WORKER = """
import os, sys, time
rank, moment = sys.argv.pop(1), sys.argv.pop(1)
if os.environ["RANK"] == rank:
    os.environ["HYPERNET_TEST_KILL_AT"] = moment
from hypernet import fileio
from hypernet.training import trainer
kill = fileio.kill_point
def noted(at):
    if os.environ.get(fileio.KILL_VARIABLE) == at:
        with open("killed-at", "w") as note:
            note.write(repr(time.time()))
    kill(at)
fileio.kill_point = trainer.kill_point = noted
from hypernet.cli import main
sys.exit(main(sys.argv[1:]))
"""
STOP_SECONDS = 60  # from the kill to the end of torchrun; measured 3-9 s on the 2-core machine


def torchrun(cwd: Path, arguments: list[str], script: Path | None = None, timeout: int = 300):
    """`torchrun --nproc_per_node 2` of `hypernet` (or of `script`), its seconds."""
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "HYPERNET_TEST_KILL_AT")}
    source = str(Path(hypernet.__file__).resolve().parents[1])
    environment.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
                       PYTHONPATH=os.pathsep.join(filter(None, [source, environment.get("PYTHONPATH")])))
    program = [str(script)] if script is not None else ["-m", "hypernet"]
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                             str(free_port()), *program, *arguments],
                            capture_output=True, text=True, env=environment, cwd=cwd, timeout=timeout)
    return result, time.perf_counter() - started


def arguments(tmp_path: Path, library: str, batch_size: int, *extra: str) -> list[str]:
    return ["train", "tiny", "--data", str(tmp_path / "data"), "--hypernet-dir", str(tmp_path / library),
            "--batch-size", str(batch_size), "--log-dir", str(tmp_path / f"log-{library}"), "--lr", f"1e-3:{END}",
            "--seed", "7", "--save-every", "2", "--preview-every", "0", "--quiet", *extra]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """One process, batch 2, 6 steps: what every continued run must end as."""
    from hypernet.cli import main

    root = tmp_path_factory.mktemp("uninterrupted")
    make_dataset(root / "data", count=8)
    (root / "lib").mkdir()
    hypernet.save(new_network(seed=3), root / "lib" / "tiny.pt")
    assert main(arguments(root, "lib", 2)) == 0
    [run] = (root / "log-lib").glob("*/tiny")
    return root / "lib" / "tiny.pt", run


def prepared(tmp_path: Path, library: str) -> None:
    if not (tmp_path / "data").is_dir():
        make_dataset(tmp_path / "data", count=8)
    (tmp_path / library).mkdir()
    hypernet.save(new_network(seed=3), tmp_path / library / "tiny.pt")


def run_folder_of(tmp_path: Path, library: str) -> Path:
    folders = [path.parent for path in (tmp_path / f"log-{library}").rglob("hypernetworks")]
    assert len(folders) == 1, folders
    return folders[0]


def assert_same_weights(path: Path, expected: Path) -> None:
    mine, theirs = hypernet.load(path).state_dict(), hypernet.load(expected).state_dict()
    assert mine.keys() == theirs.keys()
    for key in mine:
        torch.testing.assert_close(mine[key], theirs[key], rtol=0, atol=2e-4, msg=key)


def checkpoint_names(run: Path) -> list[str]:
    return sorted(path.name for path in (run / "hypernetworks").iterdir())


@pytest.mark.parametrize("rank, moment", [("1", "step:3"), ("0", "write:tiny-4.pt")],
                         ids=["worker-between-steps", "writer-during-a-checkpoint"])
def test_a_killed_worker_stops_the_run_and_one_process_continues_it_as_the_uninterrupted_run(tmp_path, uninterrupted,
                                                                                              capsys, rank, moment):
    """Rank 1 killed before step 4: rank 0 finds its peer gone at the next collective, saves
    step 3 (complete on both) and stops. Rank 0, the only writer, killed while its step-4
    checkpoint is half written: that checkpoint never appears (its temporary and side-cars
    are removed by the next run), tiny-2 is the last one."""
    from hypernet.cli import main
    from hypernet.training.checkpoints import read_resume_point

    expected_output, expected_run = uninterrupted
    prepared(tmp_path, "two")
    script = tmp_path / "kill_one_worker.py"
    script.write_text(KILL_ONE_WORKER)
    result, _ = torchrun(tmp_path, [rank, moment, *arguments(tmp_path, "two", 1)], script=script)
    stopped = time.time()
    assert result.returncode != 0, result.stderr[-3000:]
    killed = float((tmp_path / "killed-at").read_text())
    assert stopped - killed < STOP_SECONDS, stopped - killed  # the survivor stopped, torchrun ended: nothing hangs
    run = run_folder_of(tmp_path, "two")
    visible = sorted((run / "hypernetworks").glob("*.pt"))
    assert "tiny-2.pt" in [path.name for path in visible], (checkpoint_names(run), result.stderr[-3000:])
    assert "Signal 9 (SIGKILL) received" in result.stderr  # torchrun names the killed worker; the survivor says why it stops:
    assert "hypernet train: error: another process of this 2-process run stopped" in result.stderr, result.stderr[-3000:]
    if rank == "0":
        assert [path.name for path in visible] == ["tiny-2.pt"]
        assert [path for path in tmp_path.rglob(".tiny-4.pt.*.tmp")], checkpoint_names(run)  # the half-written one
    for path in visible:  # every checkpoint written before the kill loads and resumes exactly
        point = read_resume_point(path)
        assert point.exact, (path, point.notes)
        assert path.name == f"tiny-{point.network.step}.pt"
    assert hypernet.load(tmp_path / "two" / "tiny.pt").step == 0  # the output is written only at the end

    # the same command, now one process: it continues the killed run with batch 2 = 2 x 1
    assert main(arguments(tmp_path, "two", 1)) == 0
    err = capsys.readouterr().err
    assert "continuing the unfinished run" in err and "the global batch stays 2" in err, err
    assert ("removed 3 files left by an interrupted save" in err) == (rank == "0"), err
    assert "will not end as the uninterrupted run" not in err, err
    assert hypernet.load(tmp_path / "two" / "tiny.pt").step == END
    assert_same_weights(tmp_path / "two" / "tiny.pt", expected_output)
    assert run_folder_of(tmp_path, "two") == run
    for step in (2, 4, 6):
        assert_same_weights(run / "hypernetworks" / f"tiny-{step}.pt", expected_run / "hypernetworks" / f"tiny-{step}.pt")
    names = [name for name in checkpoint_names(run) if not name.startswith("tiny-3.")]  # a rescue save of step 3 is allowed
    assert names == checkpoint_names(expected_run)
    assert not [path for path in tmp_path.rglob(".*") if path.is_file()]  # no temporary file left


def test_a_run_of_one_process_continued_by_two_ends_as_the_uninterrupted_run(tmp_path, uninterrupted):
    from hypernet.cli import main

    expected_output, expected_run = uninterrupted
    prepared(tmp_path, "one")
    assert main(arguments(tmp_path, "one", 2, "--max-steps", "2")) == 0  # one process, batch 2, stops at step 2
    run = run_folder_of(tmp_path, "one")
    resume = run / "hypernetworks" / "tiny-2.pt"
    result, _ = torchrun(tmp_path, arguments(tmp_path, "one", 2, "--resume", str(resume)))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "each takes 1, so the global batch stays 2" in result.stderr, result.stderr[-3000:]
    assert "will not end as the uninterrupted run" not in result.stderr, result.stderr[-3000:]
    assert hypernet.load(tmp_path / "one" / "tiny.pt").step == END
    assert_same_weights(tmp_path / "one" / "tiny.pt", expected_output)
    assert run_folder_of(tmp_path, "one") == run
    assert checkpoint_names(run) == checkpoint_names(expected_run)
    for step in (2, 4, 6):
        assert_same_weights(run / "hypernetworks" / f"tiny-{step}.pt", expected_run / "hypernetworks" / f"tiny-{step}.pt")
