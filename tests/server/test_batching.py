"""`hypernet serve --batch-requests N`: waiting txt2img requests that share a batch key
run as one UNet batch, each answered with its own pictures, equal to running it alone."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from .live import decode_png, info_of, serve, txt2img_body, wait_for

API = "/sdapi/v1"
FIRST = txt2img_body("a red circle on a blue background <hypernet:water:1>", seed=1)
SECOND = txt2img_body("a green square <hypernet:neon:0.8>", seed=2, negative_prompt="blurry")


@pytest.fixture(scope="module")
def batching(tmp_path_factory):
    server = serve(tmp_path_factory.mktemp("batching"), queue_size=16, service_options={"batch_requests": 4})
    server.wait_idle()
    yield server
    server.stop()


class UNetBatches:
    """Records the batch size of every UNet call."""

    def __init__(self, unet):
        self.sizes: list[int] = []
        self.handle = unet.register_forward_pre_hook(self.record, with_kwargs=True)

    def record(self, module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        self.sizes.append(int(sample.shape[0]))

    def close(self):
        self.handle.remove()


def hold_the_worker(service) -> threading.Event:
    """A job that keeps the worker busy until the event is set, so requests queue up."""
    release = threading.Event()
    service.jobs.submit("hold", lambda context: release.wait(120))
    wait_for(lambda: service.jobs.busy)
    return release


def post_together(server, bodies) -> list:
    answers = [None] * len(bodies)

    def post(index, body):
        with server.client() as client:
            answers[index] = client.post(f"{API}/txt2img", json=body)

    threads = [threading.Thread(target=post, args=(i, body)) for i, body in enumerate(bodies)]
    for thread in threads:
        thread.start()
    return answers, threads


def test_two_requests_with_different_hypernetworks_share_one_unet_batch(batching):
    service = batching.service
    unet = service._generator.pipe.unet
    alone, sizes_alone = [], []
    with batching.client() as client:
        for body in (FIRST, SECOND):
            batches = UNetBatches(unet)
            try:
                answer = client.post(f"{API}/txt2img", json=body)
            finally:
                batches.close()
            assert answer.status_code == 200, answer.text
            alone.append(answer)
            sizes_alone.append(max(batches.sizes))
    assert service.jobs.groups_run == 0  # alone: nothing was waiting to join

    release = hold_the_worker(service)
    batches = UNetBatches(unet)
    try:
        answers, threads = post_together(batching, [FIRST, SECOND])
        wait_for(lambda: service.jobs.waiting == 2)
        release.set()
        for thread in threads:
            thread.join(120)
    finally:
        release.set()
        batches.close()
    assert service.jobs.groups_run == 1
    assert max(batches.sizes) == sum(sizes_alone)  # one UNet batch holding both requests' images
    assert len(batches.sizes) == 3  # steps: one call each, not one per request
    for answer, single in zip(answers, alone):
        assert answer.status_code == 200, answer.text
        together_pixels = np.asarray(decode_png(answer.json()["images"][0]), dtype=np.int16)
        alone_pixels = np.asarray(decode_png(single.json()["images"][0]), dtype=np.int16)
        assert np.abs(together_pixels - alone_pixels).max() <= 1
        assert info_of(answer)["infotexts"] == info_of(single)["infotexts"]
    assert 'Hypernetworks: "water: 1"' in info_of(answers[0])["infotexts"][0]
    assert 'Hypernetworks: "neon: 0.8"' in info_of(answers[1])["infotexts"][0]


def test_requests_that_differ_in_the_batch_key_run_apart(batching):
    service = batching.service
    before = service.jobs.groups_run
    release = hold_the_worker(service)
    try:
        answers, threads = post_together(batching, [FIRST, {**SECOND, "steps": 2},
                                                    {**SECOND, "enable_hr": True}])
        wait_for(lambda: service.jobs.waiting == 3)
        release.set()
        for thread in threads:
            thread.join(120)
    finally:
        release.set()
    assert all(answer.status_code == 200 for answer in answers), [a.text for a in answers]
    assert service.jobs.groups_run == before
    assert decode_png(answers[2].json()["images"][0]).size == (128, 128)


def test_interrupt_stops_the_batch_and_a_leaving_client_stops_only_its_share(batching):
    import httpx

    service = batching.service
    long_first, long_second = {**FIRST, "steps": 150}, {**SECOND, "steps": 150}
    # one client leaves (its timeout) while the batch runs: the other's pictures are finished
    release = hold_the_worker(service)
    try:
        answers, threads = post_together(batching, [long_second])
        wait_for(lambda: service.jobs.waiting == 1)
        leaving = threading.Thread(target=lambda: pytest.raises(httpx.TimeoutException, lambda: batching.client(
            timeout=3).post(f"{API}/txt2img", json=long_first)))
        leaving.start()
        wait_for(lambda: service.jobs.waiting == 2)
        release.set()
        leaving.join(120)
        for thread in threads:
            thread.join(300)
    finally:
        release.set()
    (answer,) = answers
    assert answer.status_code == 200, answer.text
    assert "Interrupted at step" not in info_of(answer)["infotexts"][0] and not info_of(answer)["interrupted"]

    # /interrupt stops the whole batch: both answered with what was done
    release = hold_the_worker(service)
    try:
        answers, threads = post_together(batching, [long_first, long_second])
        wait_for(lambda: service.jobs.waiting == 2)
        release.set()
        state = wait_for(lambda: (lambda state: state if state.sampling_step >= 2 else None)(service.jobs.snapshot()))
        assert len(state.job_ids) == 2 and state.runs(state.job_ids[1])  # each member's progress is the batch's
        with batching.client() as client:
            assert client.post(f"{API}/interrupt").json() == {"interrupted": True}
        for thread in threads:
            thread.join(300)
    finally:
        release.set()
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert info_of(answer)["interrupted"] and "Interrupted at step" in info_of(answer)["infotexts"][0]


def test_one_failing_request_does_not_fail_the_others(batching):
    """The batch fails as a whole (a network file broken after its request queued); each
    request then runs alone: the broken one is refused, the other answered."""
    import shutil

    service = batching.service
    folder = service.paths.hypernet_dir
    shutil.copy(service.library.resolve("water").path, folder / "doomed.pt")
    service.library.refresh()
    before = service.jobs.groups_run
    release = hold_the_worker(service)
    try:
        answers, threads = post_together(batching, [txt2img_body("a red circle <hypernet:doomed:1>", seed=1), SECOND])
        wait_for(lambda: service.jobs.waiting == 2)
        (folder / "doomed.pt").write_bytes(b"not a hypernetwork any more")
        release.set()
        for thread in threads:
            thread.join(120)
    finally:
        release.set()
    assert service.jobs.groups_run == before + 1
    broken, fine = answers
    assert 400 <= broken.status_code < 600 and "doomed" in broken.json()["detail"], broken.text
    assert "Traceback" not in broken.text
    assert fine.status_code == 200, fine.text
    assert 'Hypernetworks: "neon: 0.8"' in info_of(fine)["infotexts"][0]
