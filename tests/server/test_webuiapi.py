"""An unmodified third-party webui client (PyPI `webuiapi`) against the server."""

from __future__ import annotations

import json

import pytest

webuiapi = pytest.importorskip("webuiapi")


@pytest.fixture(scope="module")
def client(live):
    return webuiapi.WebUIApi(host="127.0.0.1", port=live.port, sampler="Euler a", steps=3)


def test_txt2img_with_a_hypernet_tag(client):
    result = client.txt2img(prompt="a red circle on a blue background <hypernet:water:1>", seed=3, width=64,
                            height=64)
    assert len(result.images) == 1 and result.image.size == (64, 64)
    assert result.info["all_seeds"] == [3]
    assert result.info["all_prompts"] == ["a red circle on a blue background <hypernet:water:1>"]
    assert 'Hypernetworks: "water: 1"' in result.info["infotexts"][0]
    assert "<hypernet:water:1>" in result.image.info["parameters"]
    # webuiapi sends eta, denoising_strength, s_* ...: accepted, with warnings, never an error
    assert result.info["warnings"]
    assert result.parameters["steps"] == 3


def test_txt2img_with_the_webui_default_size_and_override_settings(client):
    result = client.txt2img(prompt="a blue square", steps=2, width=128, height=128,
                            override_settings={"sd_hypernetwork": "neon"})
    assert result.image.size == (128, 128)
    # the webui writes its float setting as it is: 1.0
    assert result.info["all_prompts"] == ["a blue square<hypernet:neon:1.0>"]


def test_lists(client):
    names = [entry["name"] for entry in client.get_hypernetworks()]
    assert {"water", "neon"} <= set(names)
    assert "Euler a" in [sampler["name"] for sampler in client.get_samplers()]
    assert "karras" in [scheduler["name"] for scheduler in client.get_schedulers()]
    assert client.get_sd_models()[0]["model_name"] == "hypernet-toy"
    assert client.get_loras() == []
    assert "ram" in client.get_memory()
    assert client.get_progress()["state"]["job"] == ""


def test_get_and_set_options(client):
    options = client.get_options()
    assert options["sd_hypernetwork"] == "None"
    client.set_options({"sd_hypernetwork": "water", "extra_networks_default_multiplier": 0.6})
    try:
        assert client.get_options()["sd_hypernetwork"] == "water"
        result = client.txt2img(prompt="a green triangle", steps=2, width=64, height=64)
        assert result.info["all_prompts"] == ["a green triangle<hypernet:water:0.6>"]
    finally:
        client.set_options({"sd_hypernetwork": "None", "extra_networks_default_multiplier": 1.0})
    assert client.get_options()["sd_hypernetwork"] == "None"


def test_create_hypernetwork(client, live):
    """webuiapi has no create method: its clients post the webui's form with custom_post."""
    result = client.custom_post("create/hypernetwork", baseurl=True, payload={
        "name": "from-webuiapi", "enable_sizes": ["80", "32", "64"], "overwrite_old": False,
        "layer_structure": "1, 2, 1", "activation_func": "linear", "weight_init": "Normal",
        "add_layer_norm": False, "use_dropout": False, "dropout_structure": "0, 0, 0"})
    path = live.service.paths.hypernet_dir / "from-webuiapi.pt"
    assert result.info == f"create hypernetwork filename: {path}" and path.is_file()
    assert "from-webuiapi" in [entry["name"] for entry in client.get_hypernetworks()]
    generated = client.txt2img(prompt="a red circle <hypernet:from-webuiapi:1>", steps=2, width=64, height=64)
    assert "from-webuiapi: 1" in generated.info["infotexts"][0]


def test_png_info_and_interrupt(client):
    result = client.txt2img(prompt="a red circle <hypernet:water:0.5>", steps=2, width=64, height=64)
    info = client.png_info(result.image)
    assert info.info.startswith("a red circle <hypernet:water:0.5>")
    assert client.interrupt() == {"interrupted": False} and client.skip() == {"skipped": False}


def test_errors_reach_the_client_as_4xx(client):
    with pytest.raises(RuntimeError) as raised:
        client.txt2img(prompt="a circle <hypernet:watr:1>", steps=2, width=64, height=64)
    status, text = raised.value.args
    assert status == 404 and "water" in json.loads(text)["detail"]
