"""Bad requests are answered 4xx with a message (never 500, never a traceback), before
they take a place in the queue; names never reach outside the library folders."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .live import LiveServer, txt2img_body

API = "/sdapi/v1"


def refused(answer, status: int, *words: str) -> str:
    assert answer.status_code == status, (answer.status_code, answer.text)
    body = answer.json()
    message = body["detail"] if isinstance(body["detail"], str) else str(body["detail"])
    for word in words:
        assert word in message, message
    assert "Traceback" not in answer.text
    return message


@pytest.mark.parametrize("fields, words", [
    ({"sampler_name": "Nope Sampler"}, ["Nope Sampler"]),
    ({"steps": 0}, ["steps must be at least 1"]),
    ({"width": 63}, ["width 63", "multiple of 8"]),
    ({"height": 100}, ["height 100"]),
    ({"batch_size": 1000}, ["batch_size 1000", "more than the server allows"]),
    ({"n_iter": 1000}, ["n_iter 1000"]),
    ({"steps": 10_000}, ["steps 10000"]),
    ({"width": 4096, "height": 4096}, ["width 4096"]),
    ({"batch_size": 16, "width": 1024, "height": 1024}, ["pixels"]),
    ({"scheduler": "sideways"}, ["unknown scheduler", "karras"]),
    ({"subseed_strength": 2}, ["subseed strength"]),
    ({"prompt": "a circle <hypernet:water:abc>"}, ["abc"]),
])
def test_bad_txt2img_values_are_422(http, fields, words):
    refused(http.post(f"{API}/txt2img", json=txt2img_body(**fields)), 422, *words)


def test_non_number_steps_is_422_from_validation(http):
    answer = http.post(f"{API}/txt2img", json=txt2img_body(steps="many"))
    assert answer.status_code == 422
    assert any(error["loc"][-1] == "steps" for error in answer.json()["detail"])


def test_not_json_is_422(http):
    answer = http.post(f"{API}/txt2img", content=b"{not json", headers={"content-type": "application/json"})
    assert answer.status_code == 422


def test_unknown_hypernetwork_is_404_with_a_suggestion(http):
    message = refused(http.post(f"{API}/txt2img", json=txt2img_body("a circle <hypernet:watr:1>")), 404, "watr")
    assert "water" in message  # the closest existing name


def test_unknown_hypernetwork_in_override_settings(http):
    refused(http.post(f"{API}/txt2img", json=txt2img_body(override_settings={"sd_hypernetwork": "neo"})), 404, "neon")


@pytest.mark.parametrize("name", ["../secret", "sub/../../secret", "..\\secret", "/etc/passwd", "C:/Windows/x"])
def test_names_outside_the_library_are_refused(http, live, name, tmp_path):
    (live.service.paths.hypernet_dir.parent / "secret.pt").write_bytes(b"outside")
    for body in (txt2img_body(f"a circle <hypernet:{name}:1>"),
                 txt2img_body(override_settings={"sd_hypernetwork": name})):
        answer = http.post(f"{API}/txt2img", json=body)
        assert 400 <= answer.status_code < 500, answer.text
        assert "Traceback" not in answer.text
    for body in ({"hypernetwork_name": name, "data_root": str(tmp_path)},):
        answer = http.post(f"{API}/train/hypernetwork", json=body)
        assert 400 <= answer.status_code < 500, answer.text
    answer = http.post(f"{API}/options", json={"sd_hypernetwork": name})
    assert 400 <= answer.status_code < 500, answer.text


def test_dotdot_message(http):
    refused(http.post(f"{API}/txt2img", json=txt2img_body("a circle <hypernet:../secret:1>")), 422,
            "inside the library folder")


def test_symlink_out_of_the_library_is_refused(http, live, tmp_path):
    outside = tmp_path / "elsewhere.pt"
    source = next(e["path"] for e in http.get(f"{API}/hypernetworks").json() if e["name"] == "water")
    outside.write_bytes(open(source, "rb").read())
    link = live.service.paths.hypernet_dir / "escape.pt"
    os.symlink(outside, link)
    try:
        http.post(f"{API}/refresh-hypernetworks")
        answer = http.post(f"{API}/txt2img", json=txt2img_body("a circle <hypernet:escape:1>"))
        assert 400 <= answer.status_code < 500, answer.text
        assert "outside the library" in answer.json()["detail"] or "escape" in answer.json()["detail"]
    finally:
        link.unlink()
        http.post(f"{API}/refresh-hypernetworks")


def test_create_names_must_stay_in_the_library(http, live):
    for name in ("../evil", "/tmp/evil", "sub/../../evil"):
        answer = http.post(f"{API}/create/hypernetwork", json={"name": name, "enable_sizes": [80]})
        if answer.status_code == 200:  # cleaned into a plain name, as the webui cleans it
            created = Path(answer.json()["info"].removeprefix("create hypernetwork filename: "))
            assert created.parent == live.service.paths.hypernet_dir and ".." not in created.stem.split("/")
        else:
            assert 400 <= answer.status_code < 500, (name, answer.text)
    assert not (live.service.paths.hypernet_dir.parent / "evil.pt").exists()


def test_body_over_the_limit_is_413(live):
    """A second app on the same service with a small body limit (the default is 64 MiB)."""
    from hypernet.server import create_app

    small = LiveServer(create_app(live.service, ui=False, max_body_bytes=2048, manage_service=False),
                       live.service).start()
    try:
        with small.client() as client:
            answer = client.post(f"{API}/txt2img", json=txt2img_body("x" * 4096))
            refused(answer, 413, "larger than the server accepts")
            assert client.post(f"{API}/txt2img", json=txt2img_body()).status_code == 200
            # a chunked body has no Content-Length: it is counted as it arrives
            for size, status in ((4096, 413), (100, 200)):
                data = json.dumps(txt2img_body("x" * size)).encode()
                chunks = (data[i:i + 500] for i in range(0, len(data), 500))
                answer = client.post(f"{API}/txt2img", content=chunks, headers={"content-type": "application/json"})
                assert answer.status_code == status, answer.text
    finally:
        small.server.should_exit = True  # not small.stop(): the service belongs to `live`
        small.thread.join(30)
        small.socket.close()


def test_bad_create_values_are_4xx(http):
    for body, word in (({"name": "x1", "enable_sizes": ["eighty"]}, "enable_sizes"),
                       ({"name": "x2", "enable_sizes": [80], "layer_structure": "1, two, 1"}, "layer_structure"),
                       ({"name": "x3", "enable_sizes": [80], "activation_func": "nope"}, "nope"),
                       ({"name": "x4", "enable_sizes": [80], "use_dropout": True, "dropout_structure": "0, 0"},
                        "dropout"),
                       ({"name": "huge", "enable_sizes": [100000]}, "parameters"),
                       ({"name": "wide", "layer_structure": "1, 64, 1"}, "parameters"),
                       ({"name": "", "enable_sizes": [80]}, "")):
        answer = http.post(f"{API}/create/hypernetwork", json=body)
        assert 400 <= answer.status_code < 500, (body, answer.text)
        assert word in str(answer.json()["detail"])


def test_bad_train_values_are_4xx(http, tmp_path):
    http.post(f"{API}/create/hypernetwork", json={"name": "trainme", "enable_sizes": [80, 32, 64]})
    for body, word in (({"hypernetwork_name": "trainme", "data_root": str(tmp_path / "missing")}, "missing"),
                       ({"hypernetwork_name": "nosuchnet", "data_root": str(tmp_path)}, "nosuchnet"),
                       ({"hypernetwork_name": "trainme", "data_root": str(tmp_path), "learn_rate": "fast"}, "fast"),
                       ({"data_root": str(tmp_path)}, "hypernetwork_name"),
                       ({"hypernetwork_name": "trainme", "data_root": str(tmp_path), "batch_size": 1000}, "batch_size"),
                       ({"hypernetwork_name": "trainme", "data_root": str(tmp_path), "training_width": 4096},
                        "training_width")):
        answer = http.post(f"{API}/train/hypernetwork", json=body)
        assert 400 <= answer.status_code < 500, (body, answer.text)
        assert word in str(answer.json()["detail"]), answer.text


def test_a_request_needing_more_memory_than_allowed_is_422_before_it_queues(http, live, monkeypatch):
    from hypernet.memory import MemoryLimit

    live.wait_idle()  # the model is loaded: its shape is what the request is measured against
    submitted = []
    submit = live.service.jobs.submit
    monkeypatch.setattr(live.service.jobs, "submit", lambda *args, **kwargs: submitted.append(args) or submit(*args, **kwargs))
    monkeypatch.setattr(live.service.limits, "memory", MemoryLimit(limit_bytes=2**20))
    refused(http.post(f"{API}/txt2img", json=txt2img_body(batch_size=4)), 422, "batch size 4 needs about",
            "the memory limit is 1.0 MiB")
    assert submitted == []
    monkeypatch.setattr(live.service.limits, "memory", MemoryLimit(enabled=False))
    assert http.post(f"{API}/txt2img", json=txt2img_body()).status_code == 200
