"""Checkpoints survive crashes: a kill -9 during a save leaves the previous checkpoint
loadable; side-cars that do not belong to a file are never applied to it."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import hypernet
from hypernet.training.checkpoints import read_resume_point, save_checkpoint

from .conftest import new_network

WRITER = r"""
import sys, torch
from hypernet.network import Hypernetwork
from hypernet.training.checkpoints import save_checkpoint
network = Hypernetwork.create(sizes=[768, 320, 640], generator_seed=1, name="big")
optimizer = torch.optim.AdamW(network.parameters())
for p in network.parameters():
    p.grad = torch.ones_like(p)
optimizer.step()
step = 0
while True:
    step += 1
    network.metadata.step = step
    print("saving", step, flush=True)
    save_checkpoint(network, sys.argv[1], optimizer, {"step": step, "position": step, "seed": 0})
"""


def saved_pair(path: Path, seed: int, step: int):
    network = new_network(seed)
    network.metadata.step = step
    optimizer = torch.optim.AdamW(network.parameters())
    save_checkpoint(network, path, optimizer, {"step": step, "position": step, "seed": 0})
    return network


def test_a_crash_before_the_rename_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "net.pt"
    first = saved_pair(path, seed=0, step=5)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies between writing the temporary file and renaming it

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        saved_pair(path, seed=1, step=6)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # temporary files removed too
    point = read_resume_point(path)
    assert point.exact and point.network.step == 5
    assert all(torch.equal(a, b) for a, b in zip(point.network.state_dict().values(), first.state_dict().values()))


def test_side_cars_of_another_version_are_ignored_with_a_reason(tmp_path):
    path = tmp_path / "net.pt"
    saved_pair(path, seed=0, step=5)
    hypernet.save(new_network(3), path)  # the network replaced, the side-cars left from the old one
    point = read_resume_point(path)
    assert point.optimizer is None and point.state is None and not point.exact
    assert any("net.pt.optim belongs to another version" in note for note in point.notes)
    assert any("net.pt.train.json belongs to another version" in note for note in point.notes)


@pytest.mark.slow
def test_kill_9_during_saves_leaves_a_loadable_checkpoint(tmp_path):
    path = tmp_path / "big.pt"
    saved_pair(path, seed=0, step=0)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                               env=environment)
    try:
        for _ in range(3):  # let it complete two saves and start a third
            line = process.stdout.readline()
            assert line.startswith("saving"), line
        time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
        process.stdout.close()
    assert process.returncode == -signal.SIGKILL
    network = hypernet.load(path)  # whole: the last complete save (or the one before)
    assert network.step in (0, 1, 2, 3)
    point = read_resume_point(path)
    if point.state is not None:
        assert point.state["step"] == network.step  # side-cars are only ever taken with their own file
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert all(name.endswith(".tmp") for name in leftovers)
