"""Requests that cannot be honoured are refused before sampling, and sampling that goes
non-finite is an error naming the likely cause, never a black picture (issue 14)."""

import pytest

import hypernet
from hypernet import attention
from hypernet.errors import HypernetError
from hypernet.generation import SEED_LIMIT, Generator, ModelInfo, NonFiniteError, Request
from hypernet.library import Library
from hypernet.network import Hypernetwork
from tiny_models import SELF_SIZES, TEXT_WIDTH, tiny_pipeline


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    root = tmp_path_factory.mktemp("hypernetworks")
    hypernet.save(Hypernetwork.create(sizes=[TEXT_WIDTH, *SELF_SIZES], weight_init="XavierNormal", generator_seed=1,
                                      name="strong"), root / "strong.pt")
    pipe = tiny_pipeline()
    yield Generator(pipe, library=Library(root), model=ModelInfo(name="tiny"))
    attention.uninstall(pipe.unet)


def request(**changes):
    values = dict(prompt="a red circle", steps=2, seed=1, sampler="Euler", width=32, height=32)
    values.update(changes)
    return Request(**values)


@pytest.mark.parametrize("changes, words", [
    (dict(seed=2**70), "seed"),
    (dict(seed=SEED_LIMIT, batch_size=2), "seed"),
    (dict(seed=-5), "seed"),
    (dict(cfg_scale=float("nan")), "CFG scale"),
    (dict(cfg_scale=float("inf")), "CFG scale"),
    (dict(width=0, height=0), "width 0"),
])
def test_refused_up_front(generator, changes, words):
    with pytest.raises(HypernetError, match=words):
        generator.generate(request(**changes), progress=False)


def test_largest_seed_is_accepted(generator):
    [result] = generator.generate(request(seed=SEED_LIMIT), progress=False)
    assert result.seed == SEED_LIMIT


def test_huge_multiplier_is_an_error_naming_the_tag_not_a_black_picture(generator):
    with pytest.raises(NonFiniteError, match=r"<hypernet:strong:1e\+30>"):
        generator.generate(request(prompt="a red circle <hypernet:strong:1e30>"), progress=False)
    # the generator still works afterwards, with the network off again
    [result] = generator.generate(request(), progress=False)
    assert result.image.getextrema() != ((0, 0), (0, 0), (0, 0))


def test_variation_seed_blends_and_is_reported(generator):
    [plain] = generator.generate(request(seed=3), progress=False)
    assert plain.subseed is not None and plain.subseed >= 0  # drawn, as the webui reports it
    assert "Variation seed" not in plain.infotext
    [varied] = generator.generate(request(seed=3, subseed=9, subseed_strength=0.5), progress=False)
    assert varied.subseed == 9 and "Variation seed: 9, Variation seed strength: 0.5" in varied.infotext
    assert varied.image.tobytes() != plain.image.tobytes()
    [same] = generator.generate(request(seed=3, subseed=9, subseed_strength=0.0), progress=False)
    assert same.image.tobytes() == plain.image.tobytes()


def test_refreshing_embeddings_from_another_thread_never_breaks_encoding(generator):
    import threading

    stop = threading.Event()

    def refresh():
        while not stop.is_set():
            generator.reload_embeddings()

    worker = threading.Thread(target=refresh)
    worker.start()
    try:
        for clip_skip in (1, 2, 1, 2, 1):
            assert generator.prompt_encoder_for(clip_skip).clip_skip == clip_skip
    finally:
        stop.set()
        worker.join()


@pytest.mark.parametrize("name, schedule, expected", [
    ("dpm++ 2m karras", None, ("DPM++ 2M", "Karras")),
    ("DPM++ 2M KARRAS", None, ("DPM++ 2M", "Karras")),
    ("euler a", "karras", ("Euler a", "Karras")),
    ("DPM++ 2M", None, ("DPM++ 2M", "Automatic")),
])
def test_sampler_and_schedule_names_match_without_regard_to_case(name, schedule, expected):
    from hypernet.samplers import split_name

    assert split_name(name, schedule) == expected
    with pytest.raises(HypernetError, match="unknown schedule type"):
        split_name(name, "Karrass")
