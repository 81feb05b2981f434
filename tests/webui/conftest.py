"""A real server for the web UI tests: the app of `hypernet serve` on the embedded model,
served by uvicorn on a free loopback port in a background thread, with its own folders."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(base URL, service, folder) of a running server; stopped after the module."""
    import uvicorn

    from hypernet.server import ServerPaths, Service, create_app

    root = tmp_path_factory.mktemp("webui")
    paths = ServerPaths(hypernet_dir=root / "hypernetworks", checkpoint_dir=root / "checkpoints",
                        lora_dir=root / "lora", embeddings_dir=root / "embeddings", outputs_dir=root / "outputs",
                        training_dir=root / "training")
    service = Service(paths)
    app = create_app(service)
    port = _free_port()
    uvicorn_server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uvicorn_server.run, name="webui-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not uvicorn_server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", service, root
    finally:
        uvicorn_server.should_exit = True
        thread.join(60)


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, headless, driven by Playwright (no bundled browser download)."""
    from playwright import sync_api

    # scripts/test.sh installs Debian's chromium; a missing browser is a failure, not a skip
    assert CHROMIUM.exists(), f"{CHROMIUM} is not installed: apt-get install chromium (scripts/setup.sh --test does)"
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(server[0] + "/")
    page.wait_for_selector("#txt2img_prompt textarea")
    try:
        yield page
    finally:
        context.close()


def shoot(page, name: str) -> Path:
    """A screenshot artifact of the current step (tests/webui/artifacts/NAME.png)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
