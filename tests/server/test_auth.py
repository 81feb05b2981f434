"""--api-auth: HTTP basic auth on every path."""

from __future__ import annotations

import base64

import pytest

from .live import LiveServer, txt2img_body

API = "/sdapi/v1"


@pytest.fixture(scope="module")
def guarded(live):
    """A second app with --api-auth on the module's service (the model is loaded once)."""
    from hypernet.server import create_app

    server = LiveServer(create_app(live.service, ui=False, api_auth="alice:s3cret:with:colons", manage_service=False),
                        live.service).start()
    yield server
    server.server.should_exit = True
    server.thread.join(30)
    server.socket.close()


@pytest.mark.parametrize("auth", [None, ("alice", "wrong"), ("bob", "s3cret:with:colons"), ("alice", "")])
def test_401_without_or_with_wrong_credentials(guarded, auth):
    with guarded.client(auth=auth) as client:
        for method, path in (("GET", f"{API}/samplers"), ("GET", f"{API}/progress"), ("GET", "/docs"),
                             ("POST", f"{API}/txt2img"), ("GET", "/openapi.json")):
            answer = client.request(method, path, json=txt2img_body() if method == "POST" else None)
            assert answer.status_code == 401, (path, answer.text)
            assert answer.headers["WWW-Authenticate"].startswith("Basic")
            assert "authentication required" in answer.json()["detail"]


def test_malformed_authorization_header_is_401(guarded):
    with guarded.client() as client:
        for header in ("Basic !!!not-base64", "Bearer abc", "Basic " + base64.b64encode(b"alice").decode()):
            assert client.get(f"{API}/samplers", headers={"Authorization": header}).status_code == 401


def test_200_with_the_right_credentials(guarded):
    with guarded.client(auth=("alice", "s3cret:with:colons")) as client:
        assert client.get(f"{API}/samplers").status_code == 200
        answer = client.post(f"{API}/txt2img", json=txt2img_body("a red circle <hypernet:water:1>"))
        assert answer.status_code == 200, answer.text
        assert client.get("/docs").status_code == 200


def test_without_api_auth_no_credentials_are_needed(http):
    assert http.get(f"{API}/samplers").status_code == 200
