"""Data-parallel training for real: `torchrun --nproc_per_node 2 -m hypernet train` on the
CPU (gloo) with batch b per process ends where one process with batch 2b ends (same seed,
same data order, per-example randomness keyed by the global position), and writes one run
folder with one set of checkpoint files. Before the fix, on a machine without CUDA each
process trained alone (accelerate formed no process group unless told cpu=True)."""

import os
import subprocess
import sys

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
