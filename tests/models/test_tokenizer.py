"""Token ids must be those of OpenAI's reference CLIP tokenizer.

The reference below is written from the algorithm's description, independently of the
package: clean-up (ftfy, html.unescape twice, whitespace, lower-case), the CLIP
pre-tokenising regex, bytes to printable symbols, then BPE by merge rank with "</w>"
marking the end of a word. Its vocabulary is rebuilt from merges.txt alone (256 byte
symbols, the same with "</w>", one token per merge, the two special tokens), so the
shipped vocab.json is checked too.
"""

from __future__ import annotations

import html

import ftfy
import pytest
import regex

from hypernet.errors import HypernetConfigError
from hypernet.models.tokenizer import SHIPPED_TOKENIZER_DIRECTORY, ClipTokenizer, clean_text, load_clip_tokenizer

PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)


def _byte_symbols() -> dict[int, str]:
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols = {byte: chr(byte) for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in symbols:
            symbols[byte] = chr(256 + extra)
            extra += 1
    return symbols


class ReferenceTokenizer:
    def __init__(self):
        lines = (SHIPPED_TOKENIZER_DIRECTORY / "merges.txt").read_text(encoding="utf-8").split("\n")
        merges = [tuple(line.split()) for line in lines[1:] if line]
        self.byte_symbols = _byte_symbols()
        ordered = list(self.byte_symbols.values())  # printable bytes first, as CLIP orders them
        tokens = ordered + [s + "</w>" for s in ordered] + ["".join(m) for m in merges]
        tokens += ["<|startoftext|>", "<|endoftext|>"]
        self.ids = {token: index for index, token in enumerate(tokens)}
        self.ranks = {merge: rank for rank, merge in enumerate(merges)}
        self.cache = {"<|startoftext|>": ("<|startoftext|>",), "<|endoftext|>": ("<|endoftext|>",)}

    def bpe(self, word: str) -> tuple[str, ...]:
        if word not in self.cache:
            self.cache[word] = self._merge(word)
        return self.cache[word]

    def _merge(self, word: str) -> tuple[str, ...]:
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            pairs = {(parts[i], parts[i + 1]) for i in range(len(parts) - 1)}
            best = min(pairs, key=lambda pair: self.ranks.get(pair, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(parts):
                if i < len(parts) - 1 and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return tuple(parts)

    def encode(self, text: str) -> list[int]:
        text = ftfy.fix_text(text)
        text = html.unescape(html.unescape(text)).strip()
        text = regex.sub(r"\s+", " ", text).strip().lower()
        ids = []
        for piece in PATTERN.findall(text):
            symbols = "".join(self.byte_symbols[b] for b in piece.encode("utf-8"))
            ids.extend(self.ids[token] for token in self.bpe(symbols))
        return ids


@pytest.fixture(scope="module")
def reference():
    return ReferenceTokenizer()


@pytest.fixture(scope="module")
def tokenizer():
    return load_clip_tokenizer()


# Prompts where transformers' CLIPTokenizer (no ftfy, no html.unescape) gives other ids.
CLEAN_UP_PROMPTS = [
    "cafÃ©",  # mojibake that ftfy repairs to "café"
    "Tom &amp; Jerry",  # HTML entity
    "&amp;lt;3 hearts",  # entity escaped twice: unescaped twice
    "it’s a “quote”",  # curly quotes, straightened by ftfy ("’s" becomes the "'s" contraction)
    "ﬁne ﬂowers",  # ligatures
    "ＦＵＬＬ width",  # full-width letters
    "e\u0301 &#769;x",  # combining accent after html.unescape: NOT composed by the reference
]
PROMPTS = CLEAN_UP_PROMPTS + [
    "a photo of a cat",
    "  Multiple   spaces\n\tand TABS  ",
    "(masterpiece:1.2), best quality, 1girl, [blue|red] hair, <lora:x:0.5>",
    "<|endoftext|> and <|STARTOFTEXT|> inside",
    "emoji 🐱🐶 and 猫 and Ünïcödé, ΟΔΟΣ",
    "numbers 1234 and 3.14 and 1e-5",
    "don't we'll they're I'm you've he'd",
    "wow!! !",
    "",
]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_ids_match_reference(tokenizer, reference, prompt):
    assert tokenizer(prompt).input_ids == [49406, *reference.encode(prompt), 49407]


def test_known_ids(tokenizer):
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_plain_transformers_tokenizer_differs_where_clean_up_matters(tokenizer):
    from transformers import CLIPTokenizer

    plain = CLIPTokenizer.from_pretrained(str(SHIPPED_TOKENIZER_DIRECTORY))
    differing = [p for p in CLEAN_UP_PROMPTS if plain(p).input_ids != tokenizer(p).input_ids]
    assert differing == CLEAN_UP_PROMPTS


def test_every_entry_point_cleans(tokenizer, reference):
    prompt = "Tom &amp; Jerry"
    expected = reference.encode(prompt)
    assert tokenizer.encode(prompt, add_special_tokens=False) == expected
    assert tokenizer.convert_tokens_to_ids(tokenizer.tokenize(prompt)) == expected
    batch = tokenizer([prompt, "cafÃ©"], padding=True).input_ids
    assert batch[0][1:-1] == expected
    words = tokenizer(["Tom", "&amp;", "Jerry"], is_split_into_words=True, add_special_tokens=False).input_ids
    assert words == expected


def test_padding_and_truncation_sd1(tokenizer):
    ids = tokenizer("a cat", padding="max_length", max_length=77, truncation=True).input_ids
    assert len(ids) == 77 and ids[:4] == [49406, 320, 2368, 49407] and set(ids[4:]) == {49407}
    long = tokenizer("cat " * 100, padding="max_length", max_length=77, truncation=True).input_ids
    assert len(long) == 77 and long[0] == 49406 and long[-1] == 49407
    assert tokenizer.model_max_length == 77


def test_sd2_pads_with_zero_but_keeps_exclamation_marks(reference):
    sd2 = load_clip_tokenizer(pad_with="!")
    ids = sd2("wow!! !", padding="max_length", max_length=10).input_ids
    assert ids == [49406, *reference.encode("wow!! !"), 49407] + [0] * 5
    assert reference.encode("wow!! !") == [2781, 748, 256]  # OpenCLIP: "!" is not special
    assert sd2.pad_token == "!" and sd2.pad_token_id == 0


def test_save_and_reload_keep_behaviour(tmp_path, reference):
    sd2 = load_clip_tokenizer(pad_with="!")
    sd2.save_pretrained(tmp_path)
    again = ClipTokenizer.from_pretrained(tmp_path)
    assert (
        again("wow!! cafÃ©", padding="max_length", max_length=12).input_ids
        == sd2("wow!! cafÃ©", padding="max_length", max_length=12).input_ids
    )


def test_decode_round_trip(tokenizer):
    assert tokenizer.decode(tokenizer("A Photo  of a CAT").input_ids, skip_special_tokens=True) == "a photo of a cat"


def test_clean_text_matches_reference_steps():
    assert clean_text("  Tom &amp;amp; JERRY’s\n café ") == "tom & jerry's café"


def test_bad_pad_and_directory(tmp_path):
    with pytest.raises(HypernetConfigError, match="pad_with"):
        load_clip_tokenizer(pad_with="zero")
    from hypernet.errors import HypernetFileError

    with pytest.raises(HypernetFileError, match="vocab.json"):
        load_clip_tokenizer(directory=tmp_path)
