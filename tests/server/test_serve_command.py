"""`hypernet serve` itself, as a subprocess: starts, answers, stops cleanly on SIGTERM,
and a SIGTERM during a training request saves the network first."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

import hypernet

from .live import wait_for

API = "/sdapi/v1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServeProcess:
    def __init__(self, folder: Path, *extra: str, host: str = "127.0.0.1"):
        self.port = free_port()
        self.url = f"http://{host}:{self.port}"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        self.log = open(folder / "serve.log", "w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hypernet", "serve", "--host", host, "--port", str(self.port), "--no-ui",
             "--hypernet-dir", "hn", "--ckpt-dir", "ckpt", "--outputs-dir", "out", "--training-dir", "train", *extra],
            cwd=folder, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self) -> None:
        def answers() -> bool:
            assert self.process.poll() is None, self.output()
            try:
                return httpx.get(f"{self.url}{API}/samplers", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(answers, timeout=180, interval=0.2)

    def terminate(self, timeout: float = 120, sig: int = signal.SIGTERM) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout)

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
        self.log.close()


@pytest.fixture
def serve_process(tmp_path):
    started = []

    def start(*extra: str, host: str = "127.0.0.1") -> ServeProcess:
        process = ServeProcess(tmp_path, *extra, host=host)
        started.append(process)
        process.wait_ready()
        return process

    yield start
    for process in started:
        process.close()


def test_starts_answers_and_stops_cleanly_on_sigterm(serve_process):
    server = serve_process()
    answer = httpx.get(f"{server.url}{API}/samplers", timeout=30)
    assert "Euler a" in [sampler["name"] for sampler in answer.json()]
    assert server.terminate() == 0, server.output()
    assert "Traceback" not in server.output()


def test_ctrl_c_stops_cleanly_and_another_host_without_auth_warns(serve_process):
    server = serve_process(host="127.0.0.2")  # loopback too, but not the default address
    assert httpx.get(f"{server.url}{API}/samplers", timeout=30).status_code == 200
    assert server.terminate(sig=signal.SIGINT) == 0, server.output()
    assert "warning: listening on 127.0.0.2 without --api-auth" in server.output()
    assert "Traceback" not in server.output()


def test_sigterm_during_training_saves_the_network_first(serve_process, tmp_path):
    from hypernet.toy.world import write_style_set

    write_style_set(tmp_path / "data", "water", count=4, seed=0)
    server = serve_process()
    with httpx.Client(base_url=server.url, timeout=300) as http:
        created = http.post(f"{API}/create/hypernetwork", json={"name": "mine", "enable_sizes": [80, 32, 64]})
        assert created.status_code == 200, created.text
        path = tmp_path / "hn" / "mine.pt"
        answers = []
        training = threading.Thread(target=lambda: answers.append(http.post(f"{API}/train/hypernetwork", json={
            "hypernetwork_name": "mine", "data_root": str(tmp_path / "data"), "learn_rate": "0.001",
            "batch_size": 1, "steps": 100000, "create_image_every": 0, "save_hypernetwork_every": 0,
            "log_directory": str(tmp_path / "log")})))
        training.start()

        def trained_a_few_steps():
            state = httpx.get(f"{server.url}{API}/progress", params={"skip_current_image": True}, timeout=30).json()
            return state if state["state"]["job"] == "train-hypernetwork" and state["state"]["job_no"] >= 3 else None

        progress = wait_for(trained_a_few_steps, timeout=180, interval=0.1)
        assert progress["state"]["job_count"] == 100000 and 0 < progress["progress"] < 1
        assert "Loss: " in progress["textinfo"] and "Step: " in progress["textinfo"]
        assert server.terminate() == 0, server.output()
        training.join(60)
    steps = hypernet.load(path).step
    assert 3 <= steps < 100000, "saved at the step it reached"
    assert answers and answers[0].status_code == 200, answers
    info = answers[0].json()["info"]
    assert info.startswith("train hypernetwork interrupted: filename: ") and f"-> {steps}" in info
