"""The CLIP tokenizer, made to give the same ids as OpenAI's reference tokenizer.

Stable Diffusion 1.x was trained with OpenAI's CLIP ViT-L/14 text encoder and 2.x with
OpenCLIP ViT-H/14; both tokenise with OpenAI's byte-level BPE after a fixed clean-up:
``ftfy.fix_text``, ``html.unescape`` twice, collapse whitespace, lower-case. transformers'
``CLIPTokenizer`` (a *tokenizers* backend since transformers 5) only applies NFC,
whitespace collapse and lower-case, so prompts with mojibake ("cafÃ©"), HTML entities
("&amp;"), curly quotes, ligatures or full-width letters get other ids than the model
saw in training. ``ClipTokenizer`` runs the reference clean-up in Python before the fast
backend sees the text and leaves everything else (BPE, special tokens, padding,
truncation, decoding) to transformers, so diffusers' pipelines use it unchanged.

Padding: SD 1.x pads with the end-of-text token; SD 2.x (OpenCLIP) pads with id 0, which
diffusers' SD 2 tokenizer spells as ``pad_token="!"``. transformers registers such a pad
token as a special token, so a "!" typed in a prompt would then also become id 0 instead
of the BPE ids OpenCLIP gives it ("!" -> 256, "!!" -> 748). ``ClipTokenizer`` pads with
id 0 without making "!" special.
"""

from __future__ import annotations

import html
from pathlib import Path

import ftfy
import regex
from tokenizers import normalizers
from transformers import CLIPTokenizer

from ..errors import HypernetConfigError, HypernetFileError
from ..fileio import read_json_object

SHIPPED_TOKENIZER_DIRECTORY = Path(__file__).resolve().parent.parent / "data" / "clip_tokenizer"
CONTEXT_LENGTH = 77
END_OF_TEXT = "<|endoftext|>"
START_OF_TEXT = "<|startoftext|>"

# pad_with name -> pad token string; the ids are 49407 and 0 in CLIP's vocabulary.
PAD_TOKENS = {"eos": END_OF_TEXT, "!": "!"}

_WHITESPACE = regex.compile(r"\s+")


def clean_text(text: str) -> str:
    """OpenAI CLIP's text clean-up (``basic_clean`` + ``whitespace_clean`` + lower-case)."""
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return _WHITESPACE.sub(" ", text).strip().lower()


def _clean_input(value):
    """Cleans a str, a list of str (batch or pre-split words) or a list of pairs."""
    if value is None:
        return None
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_clean_input(item) for item in value)
    return value


class ClipTokenizer(CLIPTokenizer):
    """``transformers.CLIPTokenizer`` with OpenAI's text clean-up and a non-special pad token.

    Every encoding path of the fast tokenizer (``__call__``, ``encode``, ``tokenize``,
    batches, pairs, pre-split words) goes through ``_encode_plus`` or
    ``_encode_without_added_tokens``; both clean the text first. The backend keeps only a
    lower-case normaliser: its NFC step would compose characters that the reference leaves
    apart (html.unescape runs after ftfy's NFC), and lower-casing twice changes nothing.
    """

    def __init__(self, *args, pad_token: str = END_OF_TEXT, **kwargs):
        pad_token = str(pad_token)
        added = kwargs.get("added_tokens_decoder")
        if isinstance(added, dict) and pad_token != END_OF_TEXT:
            # A saved copy lists the pad token among the added tokens; re-adding it would make
            # "!" special again.
            kwargs["added_tokens_decoder"] = {i: t for i, t in added.items() if str(t) != pad_token}
        super().__init__(*args, pad_token=END_OF_TEXT, **kwargs)
        self._tokenizer.normalizer = normalizers.Lowercase()
        if pad_token != END_OF_TEXT:
            if pad_token not in self.get_vocab():
                raise HypernetConfigError(f"pad token {pad_token!r} is not in the CLIP vocabulary")
            self.pad_token = pad_token  # sets the pad id only; "!" stays an ordinary BPE symbol

    def _encode_plus(self, text, text_pair=None, *args, **kwargs):
        return super()._encode_plus(_clean_input(text), _clean_input(text_pair), *args, **kwargs)

    def _encode_without_added_tokens(self, text: str) -> list[int]:
        return super()._encode_without_added_tokens(clean_text(text))


def _read_vocabulary(directory: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    vocab_path = directory / "vocab.json"
    merges_path = directory / "merges.txt"
    for path in (vocab_path, merges_path):
        if not path.is_file():
            raise HypernetFileError(path, "missing: a CLIP tokenizer needs vocab.json and merges.txt")
    vocab = read_json_object(vocab_path)
    if not all(isinstance(i, int) for i in vocab.values()):
        raise HypernetFileError(vocab_path, "expected a JSON object mapping token strings to integer ids")
    for token in (START_OF_TEXT, END_OF_TEXT):
        if token not in vocab:
            raise HypernetFileError(vocab_path, f"the CLIP special token {token} is missing")
    try:
        lines = merges_path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise HypernetFileError(merges_path, f"not readable as UTF-8 text ({error})") from error
    merges = []
    for number, line in enumerate(lines, start=1):
        if not line or (number == 1 and line.startswith("#version")):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise HypernetFileError(merges_path, f"line {number}: expected two symbols separated by a space")
        merges.append((parts[0], parts[1]))
    return vocab, merges


def load_clip_tokenizer(pad_with: str = "eos", directory: str | Path | None = None) -> ClipTokenizer:
    """The CLIP BPE tokenizer with reference clean-up, 77 tokens long.

    ``pad_with="eos"`` pads like SD 1.x (end-of-text, id 49407), ``pad_with="!"`` like SD 2.x
    (id 0). ``directory`` holds vocab.json and merges.txt; by default the copy shipped
    with hypernet (OpenAI's CLIP BPE), so no model hub is needed.
    """
    if pad_with not in PAD_TOKENS:
        names = ", ".join(repr(name) for name in PAD_TOKENS)
        raise HypernetConfigError(f"pad_with {pad_with!r} is not one of {names}")
    source = Path(directory) if directory is not None else SHIPPED_TOKENIZER_DIRECTORY
    vocab, merges = _read_vocabulary(source)
    return ClipTokenizer(
        vocab=vocab,
        merges=merges,
        pad_token=PAD_TOKENS[pad_with],
        model_max_length=CONTEXT_LENGTH,
    )
