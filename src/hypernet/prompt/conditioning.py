"""Text-encoder conditioning the way the webui v1.10.1 builds it for SD1-style CLIP models.

A prompt becomes weighted segments (parse_emphasis), each segment is tokenized on its own,
and the tokens are packed into chunks of 75 (77 with BOS/EOS): a `BREAK` starts a new
chunk, and a chunk that would split in the middle of a phrase is cut after its last
comma instead when that comma is among the last `comma_padding_backtrack` tokens. Every
chunk is padded with EOS and encoded on its own; the encodings are concatenated along
the token axis. The weights then scale the encoder's output vectors, followed by the
webui's mean restoration (`z *= mean_before / mean_after`).

The mean is taken over the whole batch of texts encoded together, so encoding the texts
of one schedule together (as `encode_schedule` does, and as the webui does) can differ
from encoding them one by one when weights are not 1.

This module needs torch; `hypernet.prompt` itself does not import it.
"""

from __future__ import annotations

import hashlib
import math
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from ..errors import HypernetConfigError, PromptError
from .composition import split_and
from .editing import schedule as text_schedule
from .emphasis import parse_emphasis

CHUNK_LENGTH = 75


# Emphasis modes, by the webui's option names (lower-cased): how a prompt is split into
# weighted segments, and what the weights do to the encoder output.
def _segments_parsed(text):
    return parse_emphasis(text)


def _segments_literal(text):
    return [(text, 1.0)]


def _apply_original(z, multipliers):
    if bool((multipliers == 1).all()):
        return z  # the webui's result too (its mean ratio is exactly 1), minus a 0/0 when the mean is 0
    original_mean = z.mean()
    z = z * multipliers.reshape(multipliers.shape + (1,)).expand(z.shape)
    ratio = original_mean / z.mean()
    value = float(ratio.detach())
    if not math.isfinite(value) or value <= 0:
        # The webui divides anyway: a weighted mean at or across 0 (encoders whose outputs
        # average near 0) gives inf or flips every vector. Real CLIP never gets here.
        return z
    return z * ratio


def _apply_no_norm(z, multipliers):
    return z * multipliers.reshape(multipliers.shape + (1,)).expand(z.shape)


def _apply_nothing(z, multipliers):
    return z


EMPHASIS_MODES = {
    "original": (_segments_parsed, _apply_original),  # the webui default
    "no norm": (_segments_parsed, _apply_no_norm),
    "ignore": (_segments_parsed, _apply_nothing),  # brackets and BREAK read, weights unused
    "none": (_segments_literal, _apply_nothing),  # brackets and BREAK are plain text
}


@dataclass
class Chunk:
    """77 token ids with their weights; `fixes` are (position in the 77, vectors) of
    textual-inversion embeddings whose vectors replace the token embeddings there."""

    tokens: list = field(default_factory=list)
    multipliers: list = field(default_factory=list)
    fixes: list = field(default_factory=list)


class PromptEncoder:
    """Encodes prompts with a CLIP tokenizer and a `transformers.CLIPTextModel`.

    clip_skip: the webui's "CLIP_stop_at_last_layers" (1 = the last layer; k > 1 = the
    k-th hidden state from the end, then the final layer norm). comma_padding_backtrack:
    the webui's option of that name (20; 0 turns it off). emphasis: one of
    EMPHASIS_MODES. embeddings: textual inversion, {name: tensor [vectors, width]}.
    hidden_layer: read this entry of the encoder's hidden states as it is (no final layer
    norm) instead of following clip_skip: SDXL's encoders read -2, the penultimate layer.
    """

    def __init__(
        self,
        tokenizer,
        text_encoder,
        *,
        clip_skip: int = 1,
        comma_padding_backtrack: int = 20,
        emphasis: str = "original",
        embeddings: dict | None = None,
        hidden_layer: int | None = None,
    ):
        if emphasis not in EMPHASIS_MODES:
            raise HypernetConfigError(f"emphasis must be one of {', '.join(EMPHASIS_MODES)}, got {emphasis!r}")
        if isinstance(clip_skip, bool) or not isinstance(clip_skip, int) or clip_skip < 1:
            raise HypernetConfigError(f"clip_skip must be a whole number of at least 1, got {clip_skip!r}")
        if comma_padding_backtrack < 0:
            raise HypernetConfigError(f"comma_padding_backtrack must be 0 or more, got {comma_padding_backtrack!r}")
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.clip_skip = clip_skip
        self.comma_padding_backtrack = comma_padding_backtrack
        self.emphasis = emphasis
        self.hidden_layer = hidden_layer
        self.id_start = tokenizer.bos_token_id
        self.id_end = tokenizer.eos_token_id
        pad = getattr(tokenizer, "pad_token_id", None)
        self.id_pad = self.id_end if pad is None else pad
        self.comma_token = tokenizer.get_vocab().get(",</w>")
        self._model = getattr(text_encoder, "text_model", text_encoder)
        self._embeddings_by_first_id = {}
        self.embeddings = {}
        self._embedding_digests = {}
        for name, vectors in (embeddings or {}).items():
            self._add_embedding(name, vectors)
        self._empty = None

    def fingerprint(self) -> tuple:
        """Everything besides the text (and the model's weights) that decides an encoding:
        what a cache of encodings must key on."""
        return (self.clip_skip, self.comma_padding_backtrack, self.emphasis,
                tuple(sorted(self._embedding_digests.items())), self.hidden_layer)

    # -- tokens -----------------------------------------------------------------------

    def _add_embedding(self, name, vectors):
        token_embedding = self._model.embeddings.token_embedding
        vectors = torch.as_tensor(vectors)
        if vectors.dim() == 1:
            vectors = vectors.unsqueeze(0)
        width = token_embedding.weight.shape[1]
        if vectors.dim() != 2 or vectors.shape[1] != width or vectors.shape[0] == 0:
            raise HypernetConfigError(
                f"embedding {name!r}: vectors must have shape [count, {width}], got {list(vectors.shape)}"
            )
        if vectors.shape[0] > CHUNK_LENGTH:
            raise HypernetConfigError(f"embedding {name!r}: {vectors.shape[0]} vectors do not fit in {CHUNK_LENGTH}")
        ids = self.tokenizer([name], truncation=False, add_special_tokens=False)["input_ids"][0]
        if not ids:
            raise HypernetConfigError(f"embedding name {name!r} has no tokens")
        self.embeddings[name] = vectors.to(dtype=token_embedding.weight.dtype, device=token_embedding.weight.device)
        digest = hashlib.sha256(vectors.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()
        self._embedding_digests[name] = digest
        candidates = [entry for entry in self._embeddings_by_first_id.get(ids[0], []) if entry[1] != name]
        candidates.append((tuple(ids), name))
        # Longest first, so `cat` does not shadow `cat-style`; ties keep insertion order.
        candidates.sort(key=lambda entry: len(entry[0]), reverse=True)
        self._embeddings_by_first_id[ids[0]] = candidates

    def _embedding_at(self, tokens, position):
        for ids, name in self._embeddings_by_first_id.get(tokens[position], ()):
            if tuple(tokens[position : position + len(ids)]) == ids:
                return name, len(ids)
        return None, 0

    def chunks(self, text: str) -> tuple[list[Chunk], int]:
        """The prompt's chunks of 77 tokens and its token count (as the webui counts it)."""
        segments = EMPHASIS_MODES[self.emphasis][0](text)
        tokenized = self.tokenizer(
            [segment for segment, _ in segments], truncation=False, add_special_tokens=False, verbose=False
        )["input_ids"]
        chunks: list[Chunk] = []
        current = Chunk()
        state = {"count": 0, "last_comma": -1}

        def close(is_last=False):
            nonlocal current
            state["count"] += len(current.tokens) if is_last else CHUNK_LENGTH
            missing = CHUNK_LENGTH - len(current.tokens)
            if missing > 0:
                current.tokens += [self.id_end] * missing
                current.multipliers += [1.0] * missing
            current.tokens = [self.id_start, *current.tokens, self.id_end]
            current.multipliers = [1.0, *current.multipliers, 1.0]
            current.fixes = [(offset + 1, vectors) for offset, vectors in current.fixes]
            state["last_comma"] = -1
            chunks.append(current)
            current = Chunk()

        for tokens, (segment, weight) in zip(tokenized, segments):
            if segment == "BREAK" and weight == -1:
                close()
                continue
            position = 0
            while position < len(tokens):
                token = tokens[position]
                if token == self.comma_token:
                    state["last_comma"] = len(current.tokens)
                elif (
                    self.comma_padding_backtrack
                    and len(current.tokens) == CHUNK_LENGTH
                    and state["last_comma"] != -1
                    and len(current.tokens) - state["last_comma"] <= self.comma_padding_backtrack
                ):
                    # Move what follows the last comma to the next chunk (fixes too: the
                    # webui leaves them behind, see docs/prompt.md).
                    cut = state["last_comma"] + 1
                    moved_tokens = current.tokens[cut:]
                    moved_multipliers = current.multipliers[cut:]
                    moved_fixes = [(offset - cut, vectors) for offset, vectors in current.fixes if offset >= cut]
                    current.tokens = current.tokens[:cut]
                    current.multipliers = current.multipliers[:cut]
                    current.fixes = [(offset, vectors) for offset, vectors in current.fixes if offset < cut]
                    close()
                    current.tokens = moved_tokens
                    current.multipliers = moved_multipliers
                    current.fixes = moved_fixes
                if len(current.tokens) == CHUNK_LENGTH:
                    close()
                name, length = self._embedding_at(tokens, position)
                if name is None:
                    current.tokens.append(token)
                    current.multipliers.append(weight)
                    position += 1
                    continue
                vectors = self.embeddings[name]
                count = vectors.shape[0]
                if len(current.tokens) + count > CHUNK_LENGTH:
                    close()
                current.fixes.append((len(current.tokens), vectors))
                current.tokens += [0] * count
                current.multipliers += [weight] * count
                position += length
        if current.tokens or not chunks:
            close(is_last=True)
        return chunks, state["count"]

    # -- encoding ---------------------------------------------------------------------

    def empty_chunk(self) -> Chunk:
        return Chunk([self.id_start] + [self.id_end] * (CHUNK_LENGTH + 1), [1.0] * (CHUNK_LENGTH + 2), [])

    @contextmanager
    def _fixes_applied(self, batch_fixes):
        """Put embedding vectors in place of token embeddings for one forward pass (a hook
        removed afterwards; the model's weights are never touched)."""
        if not any(batch_fixes):
            yield
            return

        def replace(module, inputs, output):
            output = output.clone()
            for row, fixes in enumerate(batch_fixes):
                for offset, vectors in fixes:
                    count = min(output.shape[1] - offset, vectors.shape[0])
                    output[row, offset : offset + count] = vectors[:count].to(output.dtype)
            return output

        handle = self._model.embeddings.token_embedding.register_forward_hook(replace)
        try:
            yield
        finally:
            handle.remove()

    def _encode_tokens(self, batch_tokens, batch_fixes):
        return self._encode_tokens_pooled(batch_tokens, batch_fixes, pooled=False)[0]

    def _encode_tokens_pooled(self, batch_tokens, batch_fixes, pooled: bool):
        """(hidden states [B, 77, C], the pooled output [B, P] when `pooled`, else None).
        The pooled output is the model's own: final layer norm at the end token, then the
        text projection of a `CLIPTextModelWithProjection` (SDXL's OpenCLIP bigG)."""
        device = self._model.embeddings.token_embedding.weight.device
        tokens = torch.asarray(batch_tokens).to(device)
        if self.id_end != self.id_pad:
            # SD2-style vocabularies pad with another token after the first end token.
            for row, row_tokens in enumerate(batch_tokens):
                first_end = row_tokens.index(self.id_end)
                tokens[row, first_end + 1 :] = self.id_pad
        with self._fixes_applied(batch_fixes):
            outputs = self.text_encoder(input_ids=tokens,
                                        output_hidden_states=self.clip_skip > 1 or self.hidden_layer is not None)
        vector = None
        if pooled:
            vector = getattr(outputs, "text_embeds", None)
            vector = outputs.pooler_output if vector is None else vector
        if self.hidden_layer is not None:
            return outputs.hidden_states[self.hidden_layer], vector
        if self.clip_skip == 1:
            return outputs.last_hidden_state, vector
        hidden = outputs.hidden_states
        if self.clip_skip > len(hidden):
            raise HypernetConfigError(
                f"clip_skip {self.clip_skip} is more than the text encoder's {len(hidden)} states"
            )
        return self._model.final_layer_norm(hidden[-self.clip_skip]), vector

    def encode(self, texts) -> torch.Tensor:
        """[B, T, C] for a list of texts (a str gives B = 1), encoded as one webui batch:
        texts with fewer chunks get empty chunks, and each chunk index is weighted and
        mean-restored over the whole batch."""
        return self.encode_pooled(texts, pooled=False)[0]

    def encode_pooled(self, texts, pooled: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`encode`, and the pooled output [B, P] of each text's first chunk, unweighted
        (the webui's SDXL vector: its first chunk's pooled output, emphasis not applied)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise PromptError("encode needs at least one text")
        cache = {}
        batch = []
        for text in texts:
            if text not in cache:
                cache[text] = self.chunks(text)[0]
            batch.append(cache[text])
        apply = EMPHASIS_MODES[self.emphasis][1]
        outputs = []
        first_pooled = None
        for index in range(max(len(chunks) for chunks in batch)):
            row_chunks = [chunks[index] if index < len(chunks) else self.empty_chunk() for chunks in batch]
            z, vector = self._encode_tokens_pooled([chunk.tokens for chunk in row_chunks],
                                                   [chunk.fixes for chunk in row_chunks], pooled and index == 0)
            if index == 0:
                first_pooled = vector
            multipliers = torch.asarray([chunk.multipliers for chunk in row_chunks], dtype=torch.float32).to(z.device)
            outputs.append(apply(z, multipliers))
        return torch.hstack(outputs), first_pooled

    def empty(self) -> torch.Tensor:
        """The empty prompt's encoding [1, 77, C] (what `pad_cond_uncond` repeats)."""
        if self._empty is None:
            self._empty = self.encode("")
        return self._empty

    def encode_schedule(self, scheduled) -> list[tuple[int, torch.Tensor]]:
        """[(until_step, text), ...] -> [(until_step, tensor [T, C]), ...], all texts of the
        schedule encoded together as the webui does."""
        scheduled = list(scheduled)
        z = self.encode([text for _, text in scheduled])
        return [(until, z[row]) for row, (until, _) in enumerate(scheduled)]

    def conditioning(self, text: str, steps: int, first_pass_steps: int | None = None) -> list[tuple[int, torch.Tensor]]:
        """The per-step conditioning of one prompt (tags already removed): its schedule,
        encoded. Use it for the negative prompt, and for each part of `split_and`.
        `first_pass_steps`: this is the hires fix's second pass (`editing.when_step`)."""
        return self.encode_schedule(text_schedule(text, steps, first_pass_steps))

    def negative_conditioning(self, text: str, steps: int,
                              first_pass_steps: int | None = None) -> list[tuple[int, torch.Tensor]]:
        """The negative prompt's per-step conditioning: on SD 1.x/2.x the same as any text's."""
        return self.conditioning(text, steps, first_pass_steps)

    def composable_conditioning(self, text: str, steps: int,
                                first_pass_steps: int | None = None) -> list[tuple[float, list]]:
        """[(weight, per-step conditioning), ...] for a positive prompt: the webui splits it
        on AND (and reads a trailing `:weight`) before scheduling each part."""
        return [(weight, self.conditioning(part, steps, first_pass_steps)) for part, weight in split_and(text)]


# The per-step lookup and the padding helpers live in `batching`; re-exported here, where
# they were first defined.
from .batching import (  # noqa: E402,F401
    conditioning_at, pad_cond_uncond, pad_cond_uncond_v0, stack_conds, stack_padded,
)
