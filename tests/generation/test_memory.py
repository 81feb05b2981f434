"""A request that needs more memory than there is is refused before anything is
allocated, saying how much it needs and how much there is; normal requests pass (issue 14)."""

import time
import types

import pytest
import torch

from hypernet import attention, memory
from hypernet.cli import main
from hypernet.generation import Generator, ModelInfo, Request
from hypernet.memory import MemoryLimit, MemoryLimitError, parse_memory_limit

GiB = 2**30


@pytest.fixture(scope="module")
def generator(pipe):
    yield Generator(pipe, model=ModelInfo(name="tiny"))
    attention.uninstall(pipe.unet)


def full_size(family: str, dtype: torch.dtype, classic_attention: bool = False):
    """The shape of a real pipeline (configs, dtype, attention processors), built on the
    meta device: nothing is allocated, the estimate reads no weights."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.models.attention_processor import AttnProcessor

    from hypernet.models.configs import family_config

    config = family_config(family)
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config.unet).to(dtype)
        vae = AutoencoderKL.from_config(config.vae).to(dtype)
    if classic_attention:
        unet.set_attn_processor(AttnProcessor())
    return types.SimpleNamespace(unet=unet, vae=vae, vae_scale_factor=8)


@pytest.mark.parametrize("width, height, batch_size", [(100000, 100000, 1), (64, 64, 10000)])
def test_oversize_requests_are_refused_at_once_saying_need_and_have(generator, width, height, batch_size):
    started = time.perf_counter()
    with pytest.raises(MemoryLimitError) as error:
        generator.generate(Request("a cat", steps=1, width=width, height=height, batch_size=batch_size), progress=False)
    assert time.perf_counter() - started < 5
    message = str(error.value)
    assert f"{width}x{height}, batch size {batch_size} needs about" in message
    assert " free: lower the size" in message and "\n" not in message


def test_an_explicit_limit_is_named_and_off_turns_the_check_off(generator):
    request = Request("a cat", steps=1, seed=1, width=32, height=32)
    generator.memory_limit = MemoryLimit(limit_bytes=1024)
    try:
        with pytest.raises(MemoryLimitError, match="the memory limit is 1.0 KiB"):
            generator.generate(request, progress=False)
        generator.memory_limit = MemoryLimit(enabled=False)
        assert len(generator.generate(request, progress=False)) == 1
    finally:
        generator.memory_limit = MemoryLimit()


def test_normal_requests_pass_on_the_machines_they_run_on():
    # SD 1.5, 512x512, batch 4: fp16 on a 24 GB GPU (about 21 GB free with the model loaded),
    # fp32 on a CPU with 24 GB (about 19 GB free); SD 2 at 768x768 likewise.
    assert memory.estimate(full_size("sd15", torch.float16), 512, 512, 4, 7.0).bytes < 12 * GiB
    assert memory.estimate(full_size("sd15", torch.float32), 512, 512, 4, 7.0).bytes < 16 * GiB
    assert memory.estimate(full_size("sd2", torch.float16), 768, 768, 4, 7.0).bytes < 16 * GiB
    assert memory.estimate(full_size("sd15", torch.float16, classic_attention=True), 512, 512, 4, 7.0).bytes < 16 * GiB


def test_attention_that_materialises_scores_is_counted_quadratically():
    sdpa = memory.estimate(full_size("sd15", torch.float16), 1024, 1024, 1, 7.0)
    classic = memory.estimate(full_size("sd15", torch.float16, classic_attention=True), 1024, 1024, 1, 7.0)
    assert "UNet attention scores" not in sdpa.parts
    # 2 rows (CFG) x 8 heads x 16384^2 tokens x (2 fp16 scores + 1 cast) bytes
    assert classic.parts["UNet attention scores"] == 2 * 8 * 16384**2 * 6
    assert classic.bytes > 4 * sdpa.bytes


def test_the_toy_models_defaults_pass(generator):
    generator.check_memory(Request("a cat", batch_size=8))  # the machine's free memory


@pytest.mark.parametrize("text, expected", [
    ("auto", MemoryLimit()), ("off", MemoryLimit(enabled=False)), ("24G", MemoryLimit(24 * GiB)),
    ("1.5GiB", MemoryLimit(int(1.5 * GiB))), ("800MB", MemoryLimit(800 * 2**20)), ("4096", MemoryLimit(4096)),
])
def test_memory_limits_are_read_from_text(text, expected):
    assert parse_memory_limit(text) == expected


def test_a_bad_memory_limit_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "a cat", "--max-memory", "lots"])
    assert "24G" in capsys.readouterr().err


@pytest.mark.needs_toy_model
def test_the_cli_refuses_an_oversize_request_in_one_line(tmp_path, capsys):
    code = main(["generate", "a cat", "--size", "100000x100000", "--quiet", "--out", str(tmp_path),
                 "--hypernet-dir", str(tmp_path / "library")])
    error = capsys.readouterr().err
    assert code == 2 and "needs about" in error and "Traceback" not in error
    assert not list(tmp_path.glob("*.png"))
