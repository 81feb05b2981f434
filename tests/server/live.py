"""A real `hypernet serve` app (uvicorn on 127.0.0.1, a free port, a background thread)
on the embedded toy model, and an httpx client for it."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from pathlib import Path

import httpx

STEPS = 3  # sampling steps of the quick requests: the toy model takes ~0.05 s a step


class LiveServer:
    """uvicorn serving `app` on a loopback socket until `stop()`."""

    def __init__(self, app, service):
        import uvicorn

        self.app, self.service = app, service
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=30)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]},
                                       name=f"uvicorn-{self.port}", daemon=True)

    def start(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.service.jobs.close()  # as `hypernet serve` does on SIGTERM: the open request ends
        self.server.should_exit = True
        self.thread.join(60)
        self.socket.close()

    def client(self, **options) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=options.pop("timeout", 120), **options)

    def wait_idle(self, timeout: float = 120) -> None:
        """Until the worker has nothing running or waiting (the model preload included)."""
        deadline = time.monotonic() + timeout
        while self.service.jobs.busy or self.service.jobs.waiting:
            if time.monotonic() > deadline:
                raise TimeoutError("the worker stayed busy")
            time.sleep(0.02)


def make_service(tmp: Path, queue_size: int = 16, **options):
    from hypernet.server import ServerPaths, Service

    paths = ServerPaths(hypernet_dir=tmp / "hn", checkpoint_dir=tmp / "ckpt", outputs_dir=tmp / "out",
                        training_dir=tmp / "train", lora_dir=tmp / "lora", embeddings_dir=tmp / "emb")
    paths.hypernet_dir.mkdir(parents=True, exist_ok=True)
    return Service(paths, queue_size=queue_size, **options)


def serve(tmp: Path, queue_size: int = 16, api_auth: str | None = None, service_options: dict | None = None,
          **app_options) -> LiveServer:
    from hypernet.server import create_app

    service = make_service(tmp, queue_size=queue_size, **(service_options or {}))
    app = create_app(service, ui=False, api_auth=api_auth, **app_options)
    return LiveServer(app, service).start()


def decode_png(data: str):
    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(data)))
    image.load()
    return image


def info_of(answer: httpx.Response) -> dict:
    return json.loads(answer.json()["info"])


def txt2img_body(prompt: str = "a red circle on a blue background", **fields) -> dict:
    return {"prompt": prompt, "steps": STEPS, "seed": 1, "sampler_name": "Euler", **fields}


def wait_for(condition, timeout: float = 60, interval: float = 0.01):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(interval)
