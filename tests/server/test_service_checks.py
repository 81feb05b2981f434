"""Requests are checked before they queue: names that are not there fail at once."""

import pytest

from hypernet.errors import HypernetError
from hypernet.generation import Request
from hypernet.server import ServerPaths, Service


@pytest.fixture()
def service(tmp_path):
    (tmp_path / "lora").mkdir()
    (tmp_path / "lora" / "detail.safetensors").write_bytes(b"not read by the check")
    return Service(ServerPaths(hypernet_dir=tmp_path / "hn", lora_dir=tmp_path / "lora", outputs_dir=tmp_path / "out"))


def test_unknown_lora_is_refused_before_queueing_with_the_closest_name(service):
    with pytest.raises(HypernetError, match=r"unknown LoRA 'detial'.*detail"):
        service.txt2img(Request("a cat <lora:detial:0.5>"))
    assert service.jobs.waiting == 0


def test_known_lora_passes_the_check(service):
    service.check_request(Request("a cat <lora:detail:0.5>"))
