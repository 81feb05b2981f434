"""POST /create/hypernetwork (every field of the webui's form) and POST
/train/hypernetwork (the webui's Train-tab fields; answers when done)."""

from __future__ import annotations

from pathlib import Path

import pytest

import hypernet

from .live import txt2img_body

API = "/sdapi/v1"


def created_path(answer) -> Path:
    assert answer.status_code == 200, answer.text
    info = answer.json()["info"]
    assert info.startswith("create hypernetwork filename: ")
    return Path(info.removeprefix("create hypernetwork filename: "))


def test_create_with_every_field_of_the_webui_form(http, live):
    body = {"name": "everything", "enable_sizes": ["80", "32", "64"], "overwrite_old": False,
            "layer_structure": "1, 1.5, 1", "activation_func": "relu", "weight_init": "XavierNormal",
            "add_layer_norm": True, "use_dropout": True, "dropout_structure": "0, 0.1, 0"}
    path = created_path(http.post(f"{API}/create/hypernetwork", json=body))
    assert path == live.service.paths.hypernet_dir / "everything.pt" and path.is_file()
    network = hypernet.load(path)
    assert network.sizes == [80, 32, 64] and network.step == 0
    structure = network.structure
    assert structure.layer_structure == (1.0, 1.5, 1.0) and structure.activation == "relu"
    assert structure.layer_norm is True and structure.dropout_structure == (0.0, 0.1, 0.0)
    assert network.metadata.weight_initialization == "XavierNormal" and network.metadata.use_dropout is True
    assert "everything" in [entry["name"] for entry in http.get(f"{API}/hypernetworks").json()]


def test_create_with_the_webui_defaults_and_our_extra_fields(http, live):
    path = created_path(http.post(f"{API}/create/hypernetwork",
                                  json={"name": "defaults", "format": "safetensors", "optional_info": "made by a test",
                                        "seed": 3}))
    network = hypernet.load(path)
    assert path.suffix == ".safetensors" and network.sizes == [768, 320, 640, 1280]
    assert network.structure.layer_structure == (1.0, 2.0, 1.0) and network.structure.dropout_structure in (
        None, (0.0, 0.0, 0.0))
    assert network.metadata.optional_info == "made by a test"


def test_create_refuses_to_overwrite_unless_asked(http):
    body = {"name": "twice", "enable_sizes": [80, 32, 64]}
    first = created_path(http.post(f"{API}/create/hypernetwork", json=body))
    again = http.post(f"{API}/create/hypernetwork", json=body)
    assert again.status_code == 422 and "overwrite" in again.json()["detail"]  # not the webui's HTTP 200
    assert created_path(http.post(f"{API}/create/hypernetwork", json={**body, "overwrite_old": True})) == first


@pytest.fixture(scope="module")
def style_set(tmp_path_factory):
    from hypernet.toy.world import write_style_set

    folder = tmp_path_factory.mktemp("water-set")
    write_style_set(folder, "water", count=4, seed=0)
    return folder


def train_body(name: str, data: Path, log: Path, **fields) -> dict:
    """What the webui's Train tab sends (every field), with a few quick values."""
    return {"id_task": "task(test)", "hypernetwork_name": name, "learn_rate": "0.001", "batch_size": 2,
            "gradient_step": 1, "data_root": str(data), "log_directory": str(log), "training_width": 64,
            "training_height": 64, "varsize": False, "steps": 4, "clip_grad_mode": "disabled",
            "clip_grad_value": "0.1", "shuffle_tags": False, "tag_drop_out": 0, "latent_sampling_method": "once",
            "use_weight": False, "create_image_every": 0, "save_hypernetwork_every": 0,
            "template_filename": "style_filewords.txt", "preview_from_txt2img": False, "preview_prompt": "",
            "preview_negative_prompt": "", "preview_steps": 20, "preview_sampler_name": "Euler a",
            "preview_cfg_scale": 7, "preview_seed": -1, "preview_width": 64, "preview_height": 64, **fields}


def test_train_a_few_steps_answers_when_done(http, live, style_set, tmp_path):
    path = created_path(http.post(f"{API}/create/hypernetwork", json={"name": "mine", "enable_sizes": "80,32,64".split(",")}))
    answer = http.post(f"{API}/train/hypernetwork", json=train_body("mine", style_set, tmp_path / "log"))
    assert answer.status_code == 200, answer.text
    info = answer.json()["info"]
    assert info.startswith(f"train hypernetwork complete: filename: {path} error: None"), info
    assert "steps 0 -> 4" in info and "train embedding" not in info
    assert hypernet.load(path).step == 4
    generated = http.post(f"{API}/txt2img", json=txt2img_body("a red circle <hypernet:mine:1>"))
    assert generated.status_code == 200, generated.text
    # progress goes back to idle afterwards
    assert http.get(f"{API}/progress").json()["state"]["job"] == ""


def test_training_a_packaged_demo_writes_a_copy_to_the_library(http, live, style_set, tmp_path):
    packaged = next(Path(e["path"]) for e in http.get(f"{API}/hypernetworks").json() if e["name"] == "neon")
    before = packaged.read_bytes()
    steps = hypernet.load(packaged).step + 2
    answer = http.post(f"{API}/train/hypernetwork", json=train_body("neon", style_set, tmp_path / "log", steps=steps))
    assert answer.status_code == 200, answer.text
    copy = live.service.paths.hypernet_dir / packaged.name
    assert f"filename: {copy}" in answer.json()["info"]
    assert packaged.read_bytes() == before and copy.is_file() and hypernet.load(copy).step == steps


def test_training_with_previews(http, live, style_set, tmp_path):
    created_path(http.post(f"{API}/create/hypernetwork", json={"name": "previewed", "enable_sizes": [80, 32, 64]}))
    body = train_body("previewed", style_set, tmp_path / "log", steps=2, create_image_every=2,
                      save_hypernetwork_every=1, preview_from_txt2img=True, preview_prompt="a red circle",
                      preview_steps=2, preview_seed=1)
    answer = http.post(f"{API}/train/hypernetwork", json=body)
    assert answer.status_code == 200, answer.text
    assert "complete" in answer.json()["info"]
    assert list((tmp_path / "log").rglob("*.png")), "the preview picture"
