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


def test_non_finite_structures_are_refused_not_a_500(service):
    from hypernet.creation import create_hypernetwork
    from hypernet.server.api import _numbers

    with pytest.raises(HypernetError, match="layer_structure item 2"):
        _numbers("layer_structure", "1, nan, 1")
    with pytest.raises(HypernetError, match="finite"):
        create_hypernetwork("b", service.paths.hypernet_dir, sizes=[80], layer_structure=[1, float("inf"), 1])
    assert not list(service.paths.hypernet_dir.glob("b.*"))
