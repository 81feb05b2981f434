"""Attention weights: `(text)`, `[text]`, `(text:1.3)` and `BREAK`, read as the webui reads them.

The webui's reader is forgiving rather than strict, and its quirks decide the numbers, so
they are kept exactly:

* `(` multiplies what follows by 1.1 and `[` by 1/1.1, from the opening bracket to the
  matching closer; a closer pops the most recent opener *of its own kind*, so crossed
  brackets like `([a)]` still weigh `a`; an explicit weight `:1.3)` (spaces allowed around
  the number) closes the most recent `(` with that factor;
* brackets still open at the end apply their factor to everything after them (round ones
  first, in opening order, then square ones), and a closer with nothing to close is text;
* a backslash escapes `( ) [ ]` or itself; a backslash before anything else vanishes;
* in plain text, the word `BREAK` with the whitespace around it becomes ("BREAK", -1);
  inside brackets its weight is multiplied like any other, so it no longer breaks;
* factors multiply in a fixed order (innermost closer first), so float results such as
  1.2100000000000002 for `((x))` match the webui bit for bit, and neighbouring segments
  with exactly equal weights are merged.

One deliberate difference: a weight the pattern accepts but Python cannot read as a
number (`(x:1.2.3)`, `(x:.)`) makes the webui fail the whole generation with a
ValueError; here the colon is read as text and the bracket closes as a plain `)`.
"""

from __future__ import annotations

import re

ROUND_FACTOR = 1.1
SQUARE_FACTOR = 1 / 1.1

_TOKEN = re.compile(
    r"""
    (?P<escape>\\[()\[\]\\])          # an escaped bracket or backslash
  | (?P<backslash>\\)                  # any other backslash: dropped
  | (?P<open>[(\[])
  | :\s*(?P<weight>[+-]?[.\d]+)\s*\)  # an explicit weight closing a round bracket
  | (?P<close>[)\]])
  | (?P<text>[^\\()\[\]:]+)
  | (?P<colon>:)
    """,
    re.X,
)

_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)


def tokens(text: str):
    """Yield (kind, value, start, end) in reading order.

    kinds: 'literal' (an escaped character, or '' for a dropped backslash), 'text' (plain
    text, BREAK not yet split), 'open' / 'close' (value: the bracket), 'weight' (value: the
    factor; the token closes a round bracket), 'bad-weight' (value: the number text Python
    cannot read; the colon follows as 'text' and reading resumes after it).
    """
    position = 0
    length = len(text)
    while position < length:
        match = _TOKEN.match(text, position)
        kind = match.lastgroup
        start, end = match.span()
        if kind == "escape":
            yield "literal", match.group(0)[1], start, end
        elif kind == "backslash":
            yield "literal", "", start, end
        elif kind in ("open", "close"):
            yield kind, match.group(0), start, end
        elif kind == "weight":
            try:
                factor = float(match.group("weight"))
            except ValueError:
                yield "bad-weight", match.group("weight"), start, end
                yield "text", ":", start, start + 1
                position = start + 1
                continue
            yield "weight", factor, start, end
        else:  # plain text or a colon that is not part of a weight
            yield "text", match.group(0), start, end
        position = end


def parse_emphasis(text: str) -> list[tuple[str, float]]:
    """[(segment_text, weight), ...] exactly as the webui v1.10.1 computes them.

    BREAK markers come back as ("BREAK", -1); an empty prompt gives [("", 1.0)]. Never
    raises.
    """
    segments: list[list] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def scale(first: int, factor: float) -> None:
        for segment in segments[first:]:
            segment[1] *= factor

    def add_text(value: str) -> None:
        for index, part in enumerate(_BREAK.split(value)):
            if index:
                segments.append(["BREAK", -1])
            segments.append([part, 1.0])

    for kind, value, start, end in tokens(text):
        if kind == "literal":
            segments.append([value, 1.0])
        elif kind == "open":
            (round_open if value == "(" else square_open).append(len(segments))
        elif kind == "weight":
            if round_open:
                scale(round_open.pop(), value)
            else:
                add_text(text[start:end])
        elif kind == "close":
            stack = round_open if value == ")" else square_open
            if stack:
                scale(stack.pop(), ROUND_FACTOR if value == ")" else SQUARE_FACTOR)
            else:
                add_text(value)
        elif kind == "text":
            add_text(value)
    for first in round_open:
        scale(first, ROUND_FACTOR)
    for first in square_open:
        scale(first, SQUARE_FACTOR)
    if not segments:
        return [("", 1.0)]
    merged = [segments[0]]
    for segment in segments[1:]:
        if merged[-1][1] == segment[1]:
            merged[-1][0] += segment[0]
        else:
            merged.append(segment)
    return [(segment_text, weight) for segment_text, weight in merged]
