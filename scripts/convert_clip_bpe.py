"""One-off: turn OpenAI CLIP's BPE data (as shipped in the open_clip_torch wheel) into the
vocab.json / merges.txt pair that transformers' CLIP tokenizers read.

Usage: pip download --no-deps open_clip_torch -d /tmp/oc && unzip the .gz from it, then
    python scripts/convert_clip_bpe.py /tmp/oc/open_clip/bpe_simple_vocab_16e6.txt.gz

The data is MIT-licensed (OpenAI CLIP). The id layout: 256 byte symbols, the same with an
end-of-word marker, then one id per merge in file order, then the two special tokens.
"""

import gzip
import json
import sys
from pathlib import Path

MERGE_COUNT = 49152 - 256 - 2  # merges CLIP uses from the file (the rest are unused)


def byte_symbols() -> list[str]:
    """GPT-2 style printable stand-ins for the 256 byte values, in CLIP's order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def main(source: str, target: str) -> None:
    lines = gzip.open(source).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : MERGE_COUNT + 1]]
    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(tokens)}
    assert len(vocab) == 49408, len(vocab)
    out = Path(target)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "src/hypernet/data/clip_tokenizer")
