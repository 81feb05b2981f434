"""The conditioning builder against a tiny random CLIP text model: chunks, weights, BREAK,
comma backtracking, clip skip, embeddings, schedules and cond/uncond padding."""

import copy

import pytest

torch = pytest.importorskip("torch")

from hypernet import HypernetConfigError  # noqa: E402
from hypernet.prompt import schedule  # noqa: E402
from hypernet.prompt.conditioning import (  # noqa: E402
    PromptEncoder,
    conditioning_at,
    pad_cond_uncond,
    pad_cond_uncond_v0,
    stack_conds,
    stack_padded,
)

BOS, EOS, COMMA = 49406, 49407, 267


@pytest.fixture(scope="module")
def encoder(tokenizer, text_encoder):
    return PromptEncoder(tokenizer, text_encoder)


def ids(tokenizer, text):
    return tokenizer([text], add_special_tokens=False)["input_ids"][0]


def plain_encoding(text_encoder, token_rows):
    """The model's own output for 77-token rows: what every weight-1 prompt must equal."""
    with torch.no_grad():
        return text_encoder(input_ids=torch.tensor(token_rows)).last_hidden_state


def padded(tokens):
    return [BOS, *tokens, *[EOS] * (76 - len(tokens))]


def content(chunk):
    """A chunk's prompt tokens: without BOS, the final EOS and the EOS padding."""
    body = chunk.tokens[1:-1]
    while body and body[-1] == EOS:
        body.pop()
    return body


def test_weight_one_equals_plain_encoding(encoder, tokenizer, text_encoder):
    text = "a photo of a cat, sitting on a mat"
    with torch.no_grad():
        result = encoder.encode(text)
    expected = plain_encoding(text_encoder, [padded(ids(tokenizer, text))])
    assert result.shape == (1, 77, 32)
    assert torch.equal(result, expected)


def test_emphasis_scales_exactly_its_tokens_then_restores_the_mean(encoder, tokenizer, text_encoder):
    text = "a (cat:1.5) on a mat"
    tokens = ids(tokenizer, "a ") + ids(tokenizer, "cat") + ids(tokenizer, " on a mat")
    [chunk], _ = encoder.chunks(text)
    assert chunk.tokens == padded(tokens)
    cat_position = 1 + len(ids(tokenizer, "a "))
    assert chunk.multipliers[cat_position] == 1.5
    assert [m for i, m in enumerate(chunk.multipliers) if i != cat_position] == [1.0] * 76

    plain = plain_encoding(text_encoder, [chunk.tokens])
    multipliers = torch.ones(1, 77)
    multipliers[0, cat_position] = 1.5
    scaled = plain * multipliers[..., None]
    expected = scaled * (plain.mean() / scaled.mean())
    with torch.no_grad():
        result = encoder.encode(text)
    assert torch.equal(result, expected)
    ratio = result / plain
    others = torch.cat([ratio[0, :cat_position], ratio[0, cat_position + 1 :]])
    assert torch.allclose(ratio[0, cat_position], others[0] * 1.5)
    assert torch.allclose(others, others[0].expand_as(others))


def test_long_prompt_takes_three_chunks_and_loses_no_token(encoder, tokenizer):
    words = ["cat", "dog", "bird", "fish"] * 50  # 200 single-token words, no commas
    text = " ".join(words)
    expected_tokens = ids(tokenizer, text)
    assert len(expected_tokens) == 200
    chunks, count = encoder.chunks(text)
    assert len(chunks) == 3 and count == 200
    assert all(len(chunk.tokens) == 77 and chunk.tokens[0] == BOS and chunk.tokens[-1] == EOS for chunk in chunks)
    assert [token for chunk in chunks for token in content(chunk)] == expected_tokens
    assert [len(content(chunk)) for chunk in chunks] == [75, 75, 50]
    with torch.no_grad():
        assert encoder.encode(text).shape == (1, 231, 32)


def test_exactly_75_tokens_fit_in_one_chunk(encoder):
    chunks, count = encoder.chunks(" ".join(["cat"] * 75))
    assert len(chunks) == 1 and count == 75
    assert len(encoder.chunks(" ".join(["cat"] * 76))[0]) == 2


def test_each_chunk_is_encoded_on_its_own(encoder, text_encoder, tokenizer):
    text = " ".join(["cat"] * 80)
    chunks, _ = encoder.chunks(text)
    with torch.no_grad():
        result = encoder.encode(text)
    expected = torch.cat([plain_encoding(text_encoder, [chunk.tokens]) for chunk in chunks], dim=1)
    assert torch.equal(result, expected)


def test_break_starts_a_new_chunk(encoder, tokenizer):
    chunks, _ = encoder.chunks("a cat BREAK a dog")
    assert [content(chunk) for chunk in chunks] == [ids(tokenizer, "a cat"), ids(tokenizer, "a dog")]
    with torch.no_grad():
        assert encoder.encode("a cat BREAK a dog").shape == (1, 154, 32)


def test_break_alone_and_at_the_end(encoder):
    assert len(encoder.chunks("a cat BREAK")[0]) == 1
    assert len(encoder.chunks("BREAK")[0]) == 1
    assert len(encoder.chunks("a BREAK BREAK b")[0]) == 3


def test_break_in_brackets_is_a_word(encoder, tokenizer):
    chunks, _ = encoder.chunks("a (b BREAK c)")
    assert len(chunks) == 1
    assert ids(tokenizer, "break")[0] in chunks[0].tokens


def test_comma_backtrack_moves_the_tail_after_the_last_comma(encoder, tokenizer):
    text = " ".join(["cat"] * 70) + ", " + " ".join(["dog"] * 10)
    chunks, _ = encoder.chunks(text)
    cat, dog = ids(tokenizer, "cat")[0], ids(tokenizer, "dog")[0]
    assert content(chunks[0]) == [cat] * 70 + [COMMA]
    assert content(chunks[1]) == [dog] * 10


def test_comma_too_far_back_is_not_used(encoder, tokenizer):
    text = " ".join(["cat"] * 50) + ", " + " ".join(["dog"] * 30)
    chunks, _ = encoder.chunks(text)
    cat, dog = ids(tokenizer, "cat")[0], ids(tokenizer, "dog")[0]
    assert content(chunks[0]) == [cat] * 50 + [COMMA] + [dog] * 24
    assert content(chunks[1]) == [dog] * 6


def test_comma_exactly_twenty_back_is_still_used(encoder, tokenizer):
    # Comma at index 55: when the chunk is full (75), 75 - 55 = 20 <= 20.
    text = " ".join(["cat"] * 55) + ", " + " ".join(["dog"] * 25)
    chunks, _ = encoder.chunks(text)
    assert content(chunks[0])[-1] == COMMA and len(content(chunks[0])) == 56
    text = " ".join(["cat"] * 54) + ", " + " ".join(["dog"] * 25)  # 21 back: not used
    assert len(content(encoder.chunks(text)[0][0])) == 75


def test_comma_backtrack_can_be_turned_off(tokenizer, text_encoder):
    encoder = PromptEncoder(tokenizer, text_encoder, comma_padding_backtrack=0)
    text = " ".join(["cat"] * 70) + ", " + " ".join(["dog"] * 10)
    chunks, _ = encoder.chunks(text)
    assert len(content(chunks[0])) == 75 and len(content(chunks[1])) == 6


def test_clip_skip_takes_an_earlier_layer_then_the_final_norm(tokenizer, text_encoder):
    encoder = PromptEncoder(tokenizer, text_encoder, clip_skip=2)
    text = "a cat"
    with torch.no_grad():
        result = encoder.encode(text)
        outputs = text_encoder(input_ids=torch.tensor([padded(ids(tokenizer, text))]), output_hidden_states=True)
        expected = text_encoder.final_layer_norm(outputs.hidden_states[-2])
    assert torch.equal(result, expected)
    with pytest.raises(HypernetConfigError, match="clip_skip"):
        PromptEncoder(tokenizer, text_encoder, clip_skip=0)


def test_embedding_vectors_replace_the_tokens_of_its_name(tokenizer, text_encoder):
    vectors = torch.randn(3, 32)
    encoder = PromptEncoder(tokenizer, text_encoder, embeddings={"mystyle": vectors})
    [chunk], _ = encoder.chunks("a mystyle cat")
    a, cat = ids(tokenizer, "a")[0], ids(tokenizer, "cat")[0]
    assert content(chunk) == [a, 0, 0, 0, cat]
    assert [offset for offset, _ in chunk.fixes] == [2]

    # Same thing by hand: a copy of the model whose rows 100..102 hold the vectors.
    twin = copy.deepcopy(text_encoder)
    with torch.no_grad():
        twin.embeddings.token_embedding.weight[100:103] = vectors
        expected = twin(input_ids=torch.tensor([padded([a, 100, 101, 102, cat])])).last_hidden_state
        result = encoder.encode("a mystyle cat")
    assert torch.allclose(result, expected, atol=1e-6)
    # The hook is gone afterwards and the weights were never touched.
    assert not text_encoder.embeddings.token_embedding._forward_hooks
    with torch.no_grad():
        plain = encoder.encode("a cat")
    assert torch.equal(plain, plain_encoding(text_encoder, [padded([a, cat])]))


def test_embedding_vectors_are_not_split_across_chunks(tokenizer, text_encoder):
    encoder = PromptEncoder(tokenizer, text_encoder, embeddings={"mystyle": torch.randn(3, 32)})
    chunks, _ = encoder.chunks(" ".join(["cat"] * 74) + " mystyle")
    assert len(content(chunks[0])) == 74
    assert content(chunks[1]) == [0, 0, 0]
    assert [offset for offset, _ in chunks[1].fixes] == [1]


def test_embedding_moved_by_comma_backtrack_keeps_its_vectors(tokenizer, text_encoder):
    encoder = PromptEncoder(tokenizer, text_encoder, embeddings={"mystyle": torch.randn(2, 32)})
    chunks, _ = encoder.chunks(" ".join(["cat"] * 70) + ", mystyle " + " ".join(["dog"] * 10))
    assert content(chunks[0])[-1] == COMMA and not chunks[0].fixes
    assert content(chunks[1])[:2] == [0, 0]
    assert [offset for offset, _ in chunks[1].fixes] == [1]


def test_longest_embedding_name_wins(tokenizer, text_encoder):
    encoder = PromptEncoder(
        tokenizer, text_encoder, embeddings={"cat": torch.randn(1, 32), "cat style": torch.randn(2, 32)}
    )
    [chunk], _ = encoder.chunks("cat style")
    assert content(chunk) == [0, 0] and len(chunk.fixes) == 1 and chunk.fixes[0][1].shape[0] == 2


def test_bad_embeddings_are_refused(tokenizer, text_encoder):
    with pytest.raises(HypernetConfigError, match="shape"):
        PromptEncoder(tokenizer, text_encoder, embeddings={"x": torch.randn(2, 16)})
    with pytest.raises(HypernetConfigError, match="no tokens"):
        PromptEncoder(tokenizer, text_encoder, embeddings={" ": torch.randn(1, 32)})


def test_schedule_texts_are_encoded_together(encoder):
    scheduled = schedule("a (cat:1.3) [red:blue:3] ball", 10)
    with torch.no_grad():
        conds = encoder.encode_schedule(scheduled)
        batch = encoder.encode([text for _, text in scheduled])
        alone = encoder.encode(scheduled[0][1])
    assert [until for until, _ in conds] == [3, 10]
    assert all(cond.shape == (77, 32) for _, cond in conds)
    assert torch.equal(conds[0][1], batch[0])
    # The mean restoration is over the whole batch, so with weights it differs a little.
    assert not torch.equal(conds[0][1], alone[0])
    assert torch.allclose(conds[0][1], alone[0], atol=1e-2)


def test_shorter_texts_in_a_batch_get_empty_chunks(encoder):
    long_text = " ".join(["cat"] * 100)
    with torch.no_grad():
        both = encoder.encode([long_text, "a dog"])
        empty = encoder.empty()
        dog = encoder.encode("a dog")
    assert both.shape == (2, 154, 32)
    assert torch.equal(both[1, :77], dog[0])
    assert torch.equal(both[1, 77:], empty[0])


def test_conditioning_at_follows_the_webui_step_rule():
    first, second = torch.zeros(2), torch.ones(2)
    scheduled = [(3, first), (10, second)]
    assert conditioning_at(scheduled, 0) is first
    assert conditioning_at(scheduled, 3) is first
    assert conditioning_at(scheduled, 4) is second
    assert conditioning_at(scheduled, 10) is second
    assert conditioning_at(scheduled, 11) is first  # past the end the webui falls back to the first


def test_composable_conditioning_splits_on_and(encoder):
    with torch.no_grad():
        parts = encoder.composable_conditioning("a cat AND a dog:1.5", 10)
    assert [weight for weight, _ in parts] == [1.0, 1.5]
    assert all(len(scheduled) == 1 for _, scheduled in parts)


def test_pad_cond_uncond_repeats_the_empty_prompt(encoder):
    with torch.no_grad():
        empty = encoder.empty()
        cond = encoder.encode(" ".join(["cat"] * 100))
        uncond = encoder.encode("ugly")
    new_cond, new_uncond = pad_cond_uncond(cond, uncond, empty)
    assert new_cond is cond and new_uncond.shape == cond.shape
    assert torch.equal(new_uncond[:, 77:], empty)
    swapped_uncond, swapped_cond = pad_cond_uncond(uncond, cond, empty)
    assert swapped_uncond.shape == cond.shape and swapped_cond is cond


def test_stack_padded_appends_the_empty_prompt_to_the_shorter(encoder):
    with torch.no_grad():
        empty = encoder.empty()
        long = encoder.encode(" ".join(["cat"] * 100))[0]
        short = encoder.encode("ugly")[0]
    stacked = stack_padded([short, long], empty[0])
    assert stacked.shape == (2, 154, long.shape[1])
    assert torch.equal(stacked[1], long) and torch.equal(stacked[0, :77], short) and torch.equal(stacked[0, 77:], empty[0])


def test_pad_cond_uncond_v0_repeats_or_cuts_the_last_vector():
    cond = torch.randn(1, 154, 4)
    uncond = torch.randn(1, 77, 4)
    _, longer = pad_cond_uncond_v0(cond, uncond)
    assert longer.shape == (1, 154, 4) and torch.equal(longer[:, 77:], uncond[:, -1:].expand(1, 77, 4))
    _, shorter = pad_cond_uncond_v0(uncond, cond)
    assert torch.equal(shorter, cond[:, :77])


def test_stack_conds_repeats_the_last_vector():
    stacked = stack_conds([torch.randn(154, 4), torch.ones(77, 4)])
    assert stacked.shape == (2, 154, 4) and torch.equal(stacked[1], torch.ones(154, 4))


def test_emphasis_modes(tokenizer, text_encoder):
    text = "a (cat:1.5) BREAK dog"
    with torch.no_grad():
        ignore = PromptEncoder(tokenizer, text_encoder, emphasis="ignore").encode(text)
        no_norm = PromptEncoder(tokenizer, text_encoder, emphasis="no norm").encode(text)
        none = PromptEncoder(tokenizer, text_encoder, emphasis="none")
    assert ignore.shape == no_norm.shape == (1, 154, 32)
    assert not torch.equal(ignore, no_norm)
    assert len(none.chunks(text)[0]) == 1  # brackets and BREAK are plain text
    with pytest.raises(HypernetConfigError, match="emphasis"):
        PromptEncoder(tokenizer, text_encoder, emphasis="Original+")


def test_sd2_style_padding_after_the_first_end_token(text_encoder, tokenizer_dir):
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer(str(tokenizer_dir / "vocab.json"), str(tokenizer_dir / "merges.txt"), pad_token="!")
    encoder = PromptEncoder(tokenizer, text_encoder)
    seen = []
    handle = text_encoder.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["input_ids"]), with_kwargs=True
    )
    try:
        with torch.no_grad():
            encoder.encode("a cat")
    finally:
        handle.remove()
    row = seen[0][0].tolist()
    assert row[:4] == [BOS, *ids(tokenizer, "a cat"), EOS]
    assert row[4:] == [0] * 73
