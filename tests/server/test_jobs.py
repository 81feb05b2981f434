"""One queue, one worker, many clients: concurrency, a full queue (503), interrupt,
skip, clients that go away, failing jobs, and /progress while the worker is busy."""

from __future__ import annotations

import concurrent.futures
import re
import threading

import httpx
import pytest

from .live import decode_png, info_of, serve, txt2img_body, wait_for

API = "/sdapi/v1"
LONG = 120  # steps of a job that runs long enough to be watched (the server allows 150)


class Background:
    """A request run in a thread; `.answer()` waits for it."""

    def __init__(self, live, path: str, body: dict, timeout: float = 300):
        self._pool = concurrent.futures.ThreadPoolExecutor(1)
        self._future = self._pool.submit(self._post, live, path, body, timeout)

    @staticmethod
    def _post(live, path, body, timeout):
        with live.client(timeout=timeout) as client:
            return client.post(path, json=body)

    def answer(self, timeout: float = 300) -> httpx.Response:
        try:
            return self._future.result(timeout)
        finally:
            self._pool.shutdown(wait=False)


def sampling(http, at_least: int = 1) -> dict:
    """The /progress answer once a txt2img job has done `at_least` steps."""

    def ready():
        state = http.get(f"{API}/progress", params={"skip_current_image": True}).json()
        return state if state["state"]["job"] == "txt2img" and state["state"]["sampling_step"] >= at_least else None

    return wait_for(ready, timeout=120)


def test_twenty_concurrent_clients_are_all_answered(live):
    def one(index: int) -> httpx.Response:
        with live.client(timeout=600) as client:
            return client.post(f"{API}/txt2img", json=txt2img_body(f"a red circle <hypernet:water:{index % 3}>",
                                                                   seed=index, steps=2))

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(one, range(20)))
    assert [a.status_code for a in answers] == [200] * 20, [a.text for a in answers if a.status_code != 200]
    assert sorted(info_of(a)["all_seeds"][0] for a in answers) == list(range(20))
    for answer in answers:
        assert decode_png(answer.json()["images"][0]).size == (64, 64)


def test_progress_answers_while_the_worker_is_busy(http, live):
    job = Background(live, f"{API}/txt2img", txt2img_body(steps=LONG))
    try:
        state = sampling(http, 2)
        assert state["state"]["sampling_steps"] == LONG and 0 < state["progress"] < 1
        assert state["eta_relative"] > 0 and state["current_task"]
        with_image = http.get(f"{API}/progress").json()
        if with_image["state"]["job"] == "txt2img":
            # the live latent preview, at most the picture's size
            assert decode_png(with_image["current_image"]).size == (64, 64)
        # listings and docs do not wait on the worker either
        assert http.get(f"{API}/hypernetworks").status_code == 200
        assert http.get(f"{API}/options").status_code == 200
        assert http.get("/openapi.json").status_code == 200
        assert live.service.jobs.busy
    finally:
        http.post(f"{API}/interrupt")
        assert job.answer().status_code == 200


def test_interrupt_stops_within_one_step(http, live, monkeypatch):
    jobs, seen = live.service.jobs, []

    def interrupt_and_look():  # the steps done the moment the HTTP handler set the interrupt
        interrupted = original()
        seen.append(jobs.snapshot())
        return interrupted

    original = jobs.interrupt
    monkeypatch.setattr(jobs, "interrupt", interrupt_and_look)
    job = Background(live, f"{API}/txt2img", txt2img_body("a red circle <hypernet:water:1>", steps=LONG))
    sampling(http, 3)
    assert http.post(f"{API}/interrupt").json() == {"interrupted": True}
    (seen,) = seen
    answer = job.answer()
    assert answer.status_code == 200, answer.text  # answered with what it finished
    info = info_of(answer)
    assert info["interrupted"] is True
    done = int(re.search(r"Interrupted at step: (\d+)", info["infotexts"][0]).group(1))
    assert seen.job == "txt2img" and seen.sampling_step <= done <= seen.sampling_step + 1
    assert len(answer.json()["images"]) == 1
    assert "Interrupted at step" in decode_png(answer.json()["images"][0]).info["parameters"]
    assert any("interrupted" in warning for warning in info["warnings"])
    assert http.post(f"{API}/txt2img", json=txt2img_body()).status_code == 200  # the next one runs normally


def test_interrupt_drops_later_batches(http, live):
    job = Background(live, f"{API}/txt2img", txt2img_body(steps=60, n_iter=3))
    sampling(http, 2)
    http.post(f"{API}/interrupt")
    info = info_of(job.answer())
    assert len(info["infotexts"]) == 1 and info["interrupted"]


def test_skip_ends_only_the_batch_in_progress(http, live):
    job = Background(live, f"{API}/txt2img", txt2img_body(steps=60, n_iter=2, seed=20))
    sampling(http, 2)
    assert http.post(f"{API}/skip").json() == {"skipped": True}
    answer = job.answer()
    assert answer.status_code == 200, answer.text
    info = info_of(answer)
    assert info["all_seeds"] == [20, 21]
    assert "Interrupted at step" in info["infotexts"][0]
    assert "Interrupted at step" not in info["infotexts"][1] and "Steps: 60" in info["infotexts"][1]


def test_a_client_that_disconnects_frees_the_worker(http, live):
    done_before = live.service.jobs.completed
    with live.client(timeout=1.0) as impatient:
        with pytest.raises(httpx.TimeoutException):
            impatient.post(f"{API}/txt2img", json=txt2img_body(steps=150))
    # the abandoned job is interrupted (not run to its end) and the worker lives on
    last_step = 0

    def ended() -> bool:
        nonlocal last_step
        state = live.service.jobs.snapshot()
        last_step = max(last_step, state.sampling_step if state.job == "txt2img" else 0)
        return live.service.jobs.completed > done_before and not live.service.jobs.busy

    wait_for(ended, timeout=120, interval=0.002)
    assert last_step < 150
    assert live.service.jobs._thread.is_alive()
    answer = http.post(f"{API}/txt2img", json=txt2img_body())
    assert answer.status_code == 200, answer.text


def test_a_waiting_job_whose_client_left_is_dropped(http, live):
    running = Background(live, f"{API}/txt2img", txt2img_body(steps=LONG))
    sampling(http, 1)
    done_before = live.service.jobs.completed
    with live.client(timeout=1.0) as impatient:
        with pytest.raises(httpx.TimeoutException):
            impatient.post(f"{API}/txt2img", json=txt2img_body(steps=3, seed=99))
    http.post(f"{API}/interrupt")
    assert running.answer().status_code == 200
    live.wait_idle()
    assert live.service.jobs.completed == done_before + 1  # the abandoned job never ran
    assert http.post(f"{API}/txt2img", json=txt2img_body()).status_code == 200


def test_a_failing_job_answers_4xx_and_the_next_one_runs(http, live):
    (live.service.paths.hypernet_dir / "broken.pt").write_bytes(b"this is not a torch file")
    http.post(f"{API}/refresh-hypernetworks")
    answer = http.post(f"{API}/txt2img", json=txt2img_body("a red circle <hypernet:broken:1>"))
    assert 400 <= answer.status_code < 500, answer.text
    assert "broken" in answer.json()["detail"] and "Traceback" not in answer.text
    following = http.post(f"{API}/txt2img", json=txt2img_body("a red circle <hypernet:water:1>"))
    assert following.status_code == 200, following.text


def test_an_unexpected_error_in_a_job_is_500_with_a_message_and_the_next_one_runs(http, live, monkeypatch):
    generator = live.service._generator

    def explode(*args, **kwargs):
        raise RuntimeError("boom in the pipeline")

    monkeypatch.setattr(generator, "generate", explode)
    answer = http.post(f"{API}/txt2img", json=txt2img_body())
    assert answer.status_code == 500
    assert "RuntimeError" in answer.json()["detail"] and "boom" in answer.json()["detail"]
    assert "Traceback" not in answer.text
    monkeypatch.undo()
    assert http.post(f"{API}/txt2img", json=txt2img_body()).status_code == 200


def test_a_full_queue_answers_503_with_retry_after(tmp_path):
    live = serve(tmp_path, queue_size=2)
    try:
        live.wait_idle()
        jobs = live.service.jobs
        with live.client() as http:
            running = Background(live, f"{API}/txt2img", txt2img_body(steps=LONG, n_iter=10))
            sampling(http, 1)
            first = Background(live, f"{API}/txt2img", txt2img_body(steps=2, seed=1))
            wait_for(lambda: jobs.waiting == 1)
            impatient = Background(live, f"{API}/txt2img", txt2img_body(steps=2, seed=2), timeout=3)
            wait_for(lambda: jobs.waiting == 2)
            answer = http.post(f"{API}/txt2img", json=txt2img_body())
            assert answer.status_code == 503, answer.text
            assert int(answer.headers["Retry-After"]) >= 1
            assert "queue is full" in answer.json()["detail"] and "try again" in answer.json()["detail"]
            # a waiting client that leaves gives its place back at once, not when the worker reaches it
            with pytest.raises(httpx.TimeoutException):
                impatient.answer()
            wait_for(lambda: jobs.waiting == 1)
            assert not running._future.done()
            second = Background(live, f"{API}/txt2img", txt2img_body(steps=2, seed=3))
            wait_for(lambda: jobs.waiting == 2)
            http.post(f"{API}/interrupt")
            assert running.answer().status_code == 200
            assert [job.answer().status_code for job in (first, second)] == [200, 200]
            assert http.post(f"{API}/txt2img", json=txt2img_body()).status_code == 200
    finally:
        live.stop()


def test_stopping_the_server_fails_waiting_jobs_with_503(tmp_path):
    live = serve(tmp_path, queue_size=4)
    live.wait_idle()
    with live.client() as http:
        running = Background(live, f"{API}/txt2img", txt2img_body(steps=LONG))
        sampling(http, 1)
        waiting = Background(live, f"{API}/txt2img", txt2img_body(steps=2))
        wait_for(lambda: live.service.jobs.waiting == 1)
        stopper = threading.Thread(target=live.stop)
        stopper.start()
        assert running.answer().status_code == 200  # interrupted, answered with what it had
        answer = waiting.answer()
        assert answer.status_code == 503 and "shutting down" in answer.json()["detail"]
        stopper.join(60)
        assert not live.thread.is_alive()
