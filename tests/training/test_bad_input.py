"""Bad input is caught before the first step, with a message naming it, and nothing is
written: no run folder, no checkpoint, the network file untouched."""

import pytest

import hypernet
from hypernet.errors import HypernetError
from hypernet.network import Hypernetwork
from hypernet.training import PreviewOptions, TrainingConfig, train

from .conftest import draw, make_dataset, new_network


@pytest.fixture
def setup(tmp_path):
    folder = make_dataset(tmp_path / "data")
    source = tmp_path / "lib" / "tiny.pt"
    hypernet.save(new_network(), source)
    return tmp_path, folder, source


def config(tmp_path, folder, **changes):
    options = dict(data=folder, learning_rate="1e-3", max_steps=2, width=16, height=16, save_every=1, preview_every=1,
                   log_dir=tmp_path / "logs")
    options.update(changes)
    return TrainingConfig(**options)


def refused(pipe, tmp_path, source, training_config, network=None, **options):
    before = source.read_bytes()
    with pytest.raises(HypernetError) as caught:
        train(pipe, network or hypernet.load(source), training_config, progress=False, log=lambda m: None, **options)
    assert not (tmp_path / "logs").exists()
    assert source.read_bytes() == before
    assert sorted(p.name for p in source.parent.iterdir()) == ["tiny.pt"]
    return str(caught.value)


def test_missing_dataset_folder(pipe, setup):
    tmp_path, folder, source = setup
    message = refused(pipe, tmp_path, source, config(tmp_path, tmp_path / "nowhere"))
    assert "nowhere" in message and "does not exist" in message


def test_empty_dataset_folder(pipe, setup):
    tmp_path, folder, source = setup
    (tmp_path / "empty").mkdir()
    message = refused(pipe, tmp_path, source, config(tmp_path, tmp_path / "empty"))
    assert "no images" in message


def test_corrupt_images_are_listed(pipe, setup):
    tmp_path, folder, source = setup
    (folder / "zz-broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    message = refused(pipe, tmp_path, source, config(tmp_path, folder))
    assert "zz-broken.jpg" in message and "cannot be read" in message


@pytest.mark.parametrize("field", ["learning_rate", "clip_value"])
def test_schedule_that_does_not_parse_shows_the_position(pipe, setup, field):
    tmp_path, folder, source = setup
    message = refused(pipe, tmp_path, source, config(tmp_path, folder, clip_grad="norm", **{field: "1e-3:10, 1e-4:oops"}))
    assert "'oops' is not a whole number" in message and "at character 15" in message


def test_missing_or_empty_template(pipe, setup):
    tmp_path, folder, source = setup
    message = refused(pipe, tmp_path, source, config(tmp_path, folder, template="no_such_template.txt"))
    assert "no_such_template.txt" in message and "not found" in message and "style_filewords.txt" in message
    empty = tmp_path / "empty_template.txt"
    empty.write_text("\n\n")
    message = refused(pipe, tmp_path, source, config(tmp_path, folder, template=str(empty)))
    assert "empty_template.txt" in message and "template is empty" in message


def test_a_network_whose_sizes_match_no_attention_layer(pipe, setup):
    tmp_path, folder, source = setup
    sd_network = Hypernetwork.create(sizes=[768, 320, 640, 1280], generator_seed=0)
    hypernet.save(sd_network, source)
    message = refused(pipe, tmp_path, source, config(tmp_path, folder))
    assert "768, 320, 640, 1280" in message and "32, 48, 64" in message and "--sizes 32,48,64" in message


def test_options_out_of_range(pipe, setup):
    tmp_path, folder, source = setup
    message = refused(pipe, tmp_path, source, config(tmp_path, folder, batch_size=0, latent_sampling="sometimes",
                                                     ))
    assert "batch_size must be" in message and "latent_sampling 'sometimes'" in message
    message = refused(pipe, tmp_path, source, config(tmp_path, folder, width=17))
    assert "width 17 must be a multiple of 2" in message
    message = refused(pipe, tmp_path, source, config(tmp_path, folder, preview=PreviewOptions(sampler="Euler b")))
    assert "unknown sampler 'Euler b'" in message


def test_a_network_that_does_not_fit_the_resume_file(pipe, setup):
    tmp_path, folder, source = setup
    other = tmp_path / "other.pt"
    hypernet.save(Hypernetwork.create(sizes=[32], generator_seed=0), other)
    message = refused(pipe, tmp_path, source, config(tmp_path, folder), resume=other)
    assert "cannot resume" in message


def test_batch_size_larger_than_the_dataset_is_clamped_and_said(pipe, setup):
    tmp_path, folder, source = setup
    messages = []
    result = train(pipe, hypernet.load(source), config(tmp_path, folder, batch_size=9, gradient_accumulation=3,
                                                       preview_every=0), progress=False, log=messages.append)
    assert any("batch size 9 is larger than the dataset (4 images); using batch size 4" in m for m in messages)
    assert any("gradient accumulation 3 is more than the 1 batches of an epoch; using 1" in m for m in messages)
    assert result.stop_reason == "finished" and result.steps_done == 2


def test_mixed_sizes_in_buckets_with_alpha_weights(pipe, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    draw(folder / "wide.png", (200, 0, 0), "square", size=(48, 24), alpha=True)
    draw(folder / "tall.png", (0, 200, 0), "circle", size=(24, 48))
    draw(folder / "square.png", (0, 0, 200), "circle", size=(40, 40), alpha=True)
    result = train(pipe, new_network(), TrainingConfig(data=folder, learning_rate="1e-3", max_steps=3, width=32, height=32,
                                                       resize="bucket", use_alpha_weight=True, batch_size=1,
                                                       save_every=0, preview_every=0, run_dir=tmp_path / "run", seed=0),
                   progress=False, log=lambda m: None)
    assert result.stop_reason == "finished" and result.steps_done == 3
    result = train(pipe, new_network(), TrainingConfig(data=folder, learning_rate="1e-3", max_steps=2, resize="keep",
                                                       latent_sampling="deterministic", save_every=0, preview_every=0,
                                                       run_dir=tmp_path / "run2", seed=0),
                   progress=False, log=lambda m: None)
    assert result.stop_reason == "finished"
