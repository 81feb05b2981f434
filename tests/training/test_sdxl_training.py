"""Training a 2048/640/1280-style hypernetwork on the tiny SDXL-architecture pipeline:
the same trainer, cached latents and both text embeddings (context and pooled), size
conditioning per bucket, frozen base, exact resume."""

import hashlib

import pytest
import torch

import hypernet
from hypernet.network import Hypernetwork
from hypernet.prompt.sdxl import DualConditioning
from hypernet.training import TrainingConfig, train
from hypernet.training.checkpoints import read_resume_point
from hypernet.training.loss import added_conditioning
from tiny_models import SDXL_CONTEXT, SDXL_SELF_SIZES, SDXL_TEXT_WIDTHS, tiny_sdxl_pipeline

from .conftest import draw, make_dataset

STEPS = 6


@pytest.fixture(scope="module")
def xl():
    return tiny_sdxl_pipeline()


def checksum(pipe) -> str:
    digest = hashlib.sha256()
    for component in (pipe.unet, pipe.vae, pipe.text_encoder, pipe.text_encoder_2):
        for name, tensor in component.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def config(folder, run_dir, **changes):
    options = dict(data=folder, learning_rate="5e-3", max_steps=STEPS, batch_size=2, width=32, height=32,
                   resize="bucket", shuffle_tags=True, flip=True, save_every=3, preview_every=0, run_dir=run_dir,
                   seed=5)
    options.update(changes)
    return TrainingConfig(**options)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = make_dataset(tmp_path_factory.mktemp("xl") / "data", count=4)
    for index in range(2):  # a second bucket: 48 x 32 pictures
        draw(folder / f"wide{index}.png", (200, 90, 30), "circle", size=(48, 32))
        (folder / f"wide{index}.txt").write_text("an orange circle, wide\n", encoding="utf-8")
    return folder


def network():
    return Hypernetwork.create(sizes=[SDXL_CONTEXT, *SDXL_SELF_SIZES], generator_seed=3, name="xl")


def test_size_conditioning_follows_each_micro_batchs_bucket():
    conditioning = DualConditioning(torch.zeros(2, 77, SDXL_CONTEXT), torch.ones(2, SDXL_TEXT_WIDTHS[1]))
    added = added_conditioning(conditioning, torch.zeros(2, 4, 16, 24), 2, torch.float32)
    assert added["time_ids"].tolist() == [[32, 48, 0, 0, 32, 48]] * 2
    assert torch.equal(added["text_embeds"], conditioning.pooled)
    assert added_conditioning(torch.zeros(2, 77, 48), torch.zeros(2, 4, 16, 16), 8, torch.float32) is None


def test_training_changes_the_network_only_and_resumes_exactly(xl, data, tmp_path):
    before = checksum(xl)
    whole = network()
    first = train(xl, whole, config(data, tmp_path / "whole", preview_every=STEPS), progress=False, log=lambda m: None)
    assert first.stop_reason == "finished" and first.steps_done == STEPS
    assert checksum(xl) == before  # the base model is frozen and handed back as it came
    assert any(not torch.equal(a, b) for a, b in zip(whole.state_dict().values(), network().state_dict().values()))
    assert list((tmp_path / "whole" / "images").glob("*.png"))  # a preview through the SDXL generator

    source = tmp_path / "xl.pt"
    hypernet.save(network(), source)
    steps = [0]
    stopped = train(xl, hypernet.load(source), config(data, tmp_path / "run"), progress=False, log=lambda m: None,
                    on_step=lambda info: steps.__setitem__(0, info.step), stop=lambda: steps[0] >= 3)
    assert stopped.stop_reason == "interrupted" and stopped.steps_done == 3
    checkpoint = tmp_path / "run" / "hypernetworks" / "xl-3.pt"
    assert read_resume_point(checkpoint).exact
    resumed_network = hypernet.load(source)
    resumed = train(xl, resumed_network, config(data, tmp_path / "run"), resume=checkpoint, progress=False,
                    log=lambda m: None)
    assert resumed.resumed_exactly and resumed.start_step == 3 and resumed.steps_done == STEPS
    expected = whole.state_dict()
    for key, value in resumed_network.state_dict().items():
        assert torch.allclose(value, expected[key], atol=1e-6, rtol=0), key
