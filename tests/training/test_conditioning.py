"""Training conditions captions exactly as generation conditions a prompt: emphasis, chunks
of 75 tokens, padding with the empty prompt, and a cache keyed on the encoder's settings."""

import torch

from hypernet import attention
from hypernet.generation import Generator
from hypernet.prompt.conditioning import pad_cond_uncond
from hypernet.training import TrainingConfig, text_cache, train
from hypernet.training import loss as loss_module

from .conftest import draw, new_network

EMPHASIS = "a (red:1.4) circle, [bold]"
LONG = ", ".join(f"shape {word}" for word in ("one two three four five six seven eight nine ten".split() * 5))


def generation_encoding(pipe, text):
    """What `Generator` feeds the UNet for `text` (one prompt, no editing: one entry)."""
    generator = Generator(pipe)
    try:
        (until, tensor), = generator.prompt_encoder.conditioning(text, 20)
        return tensor, generator.prompt_encoder.empty()
    finally:
        attention.uninstall(pipe.unet)


def captioned_dataset(folder, captions):
    folder.mkdir(parents=True)
    for index, caption in enumerate(captions):
        draw(folder / f"{index}.png", (200, 40, 40), "circle")
        (folder / f"{index}.txt").write_text(caption, encoding="utf-8")
    template = folder.parent / "filewords.txt"
    template.write_text("[filewords]\n", encoding="utf-8")
    return folder, template


def test_training_feeds_the_unet_what_generation_feeds_it(pipe, tmp_path, monkeypatch):
    assert len(pipe.tokenizer(LONG)["input_ids"]) > 77  # two chunks
    seen = []
    real = loss_module.diffusion_loss

    def recording(unet, schedule, latents, noise, timesteps, states, *rest, **options):
        seen.append(states.detach().clone())
        return real(unet, schedule, latents, noise, timesteps, states, *rest, **options)

    monkeypatch.setattr(loss_module, "diffusion_loss", recording)
    folder, template = captioned_dataset(tmp_path / "data", [EMPHASIS, LONG])
    config = TrainingConfig(data=folder, template=str(template), learning_rate="1e-4", max_steps=1, batch_size=2,
                            width=16, height=16, save_every=0, preview_every=0, run_dir=tmp_path / "run", seed=3,
                            caption_dropout=0.0)  # both captions, as written
    train(pipe, new_network(), config, progress=False, log=lambda m: None)

    emphasis, empty = generation_encoding(pipe, EMPHASIS)
    long, _ = generation_encoding(pipe, LONG)
    assert emphasis.shape[0] == 77 and long.shape[0] == 154
    padded, _ = pad_cond_uncond(emphasis[None], long[None], empty)  # as generation pads the shorter
    (states,) = seen
    assert states.shape == (2, 154, emphasis.shape[1])
    first = 0 if torch.equal(states[0, :77], emphasis) else 1  # the batch order is the sampler's
    assert torch.equal(states[first], padded[0]) and torch.equal(states[1 - first], long)

    # what training used before: diffusers' encode_prompt (no emphasis, cut at 77 tokens)
    with torch.no_grad():
        before, _ = pipe.encode_prompt([EMPHASIS, LONG], "cpu", 1, False)
    assert before.shape[1] == 77
    assert not torch.allclose(before[0], emphasis)


def test_cache_keys_include_the_encoder_settings(pipe):
    encoder = text_cache.prompt_encoder(pipe)
    text = text_cache.TextConditioning(encoder, cache_size=8)
    first = text([EMPHASIS], "cpu", torch.float32)
    assert torch.equal(text([EMPHASIS], "cpu", torch.float32), first) and text.encoded == 1
    encoder.clip_skip = 2
    skipped = text([EMPHASIS], "cpu", torch.float32)
    assert text.encoded == 2 and not torch.equal(skipped, first)
    encoder.clip_skip = 1
    encoder._add_embedding("circle", torch.ones(1, pipe.text_encoder.config.hidden_size))
    with_embedding = text([EMPHASIS], "cpu", torch.float32)
    assert text.encoded == 3 and not torch.equal(with_embedding, first)
