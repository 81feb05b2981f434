"""Prompt editing `[from:to:when]` and alternation `[a|b]`: the per-step text schedule.

The webui reads these with an Earley grammar (lark). That grammar accepts every prompt
except two kinds (a `|` outside any alternation, a backslash at the end or before a line
break), because any bracket or colon it cannot fit into a construct is kept as a loose
character. We get the same readings without a general parser from three facts:

* a construct is a bracket pair whose inside is *entirely* constructs and text: in there a
  bracket always nests, so an opener's partner is fixed by ordinary bracket matching;
* two valid constructs never cross (both would contain the same matched pair), so the
  valid constructs form a tree and the outermost ones can be taken greedily left to right;
* whether a pair is a valid construct is a local test on its depth-one separators.

Where the grammar allows two readings that print differently (a construct directly
followed by a loose bracket or colon, e.g. `[a:2]]`), the webui's choice depends on
Python's per-process string hash seed; we always take the reading that keeps the
construct (see docs/prompt.md).
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass, field

from ..errors import PromptError

# The webui grammar's number (lark's SIGNED_NUMBER), ASCII digits only, with optional
# whitespace on both sides, as it must fill the whole part after the last colon.
_WHEN = re.compile(r"\s*([+-]?(?:[0-9]+[eE][+-]?[0-9]+|(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[0-9]+))\s*")

_OPENERS = {"[": "]", "(": ")"}
_CLOSERS = {"]": "[", ")": "("}
_SPECIAL = frozenset("[]():|")


@dataclass
class Construct:
    """A bracket pair the grammar reads as a construct.

    kind: "emphasis" (kept verbatim), "edit" (`[from:to:when]`) or "alternate" (`[a|b]`).
    parts: the spans (start, end) of the inner prompts, in order (edit: before, after;
    before is None when absent). when_text: the step text of an edit, as written.
    children: constructs directly inside, in order.
    """

    kind: str
    start: int
    end: int  # index one past the closing bracket
    parts: list = field(default_factory=list)
    when_text: str | None = None
    children: list = field(default_factory=list)


@dataclass
class Reading:
    """How the grammar reads a whole prompt.

    ok: False when the grammar rejects the prompt (then the webui uses it verbatim for
    every step); failure is (position, reason) then. top: the outermost constructs.
    loose: positions of brackets and colons read as plain characters at the top level.
    """

    text: str
    ok: bool
    top: list
    loose: list
    failure: tuple[int, str] | None = None
    invalid_pairs: list = field(default_factory=list)  # matched pairs that are no construct: (start, end, why)
    specials: list = field(default_factory=list)  # every unescaped bracket, colon and bar: (position, char)


def _scan(text: str):
    """The unescaped special characters as (position, char), or a failure position.

    A backslash escapes the next character (a line break excepted); a backslash with
    nothing it may escape makes the grammar reject the prompt.
    """
    specials = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            if i + 1 >= n or text[i + 1] == "\n":
                return specials, i
            i += 2
            continue
        if c in _SPECIAL:
            specials.append((i, c))
        i += 1
    return specials, None


def _match_pairs(specials):
    """partner[k] = index (in specials) of the closer matching opener k, for every opener
    whose text up to that closer nests properly. A closer of the wrong kind spoils every
    opener still open (from each of them the nesting breaks there)."""
    partner = {}
    stack = []
    for k, (_, c) in enumerate(specials):
        if c in _OPENERS:
            stack.append(k)
        elif c in _CLOSERS:
            if stack and specials[stack[-1]][1] == _CLOSERS[c]:
                partner[stack.pop()] = k
            else:
                stack.clear()
    return partner


def _build(text, specials, partner, k, constructs, invalid):
    """The construct opened by specials[k] (its inner pairs already decided), or None."""
    j = partner[k]
    start, opener = specials[k]
    close_pos = specials[j][0]
    end = close_pos + 1
    children = []
    separators = []
    ok = True
    m = k + 1
    while m < j:
        pos, c = specials[m]
        if c in _OPENERS:
            child = constructs.get(m)
            if child is None:
                ok = False  # keep going: the separators still tell what was meant
            else:
                children.append(child)
            m = partner[m] + 1
            continue
        separators.append((pos, c))
        m += 1
    bars = [p for p, c in separators if c == "|"]
    colons = [p for p, c in separators if c == ":"]
    if not ok:
        if opener == "[" and (bars or colons):
            invalid.append((start, end, "inner"))
        return None
    if opener == "(":
        if bars or len(colons) > 1:
            invalid.append((start, end, "paren"))
            return None
        return Construct("emphasis", start, end, children=children)
    if not bars and not colons:
        return Construct("emphasis", start, end, children=children)
    if bars and colons:
        invalid.append((start, end, "mixed"))
        return None
    if bars:
        parts = list(zip([start + 1, *[b + 1 for b in bars]], [*bars, close_pos]))
        return Construct("alternate", start, end, parts=parts, children=children)
    if len(colons) > 2:
        invalid.append((start, end, "colons"))
        return None
    last = colons[-1]
    match = None if any(child.start > last for child in children) else _WHEN.fullmatch(text, last + 1, close_pos)
    if match is None:
        invalid.append((start, end, "when"))
        return None
    if len(colons) == 2:
        parts = [(start + 1, colons[0]), (colons[0] + 1, last)]
    else:
        parts = [None, (start + 1, last)]
    return Construct("edit", start, end, parts=parts, when_text=match.group(1), children=children)


def read(text: str) -> Reading:
    """Read a prompt the way the webui's editing grammar does (see the module docstring)."""
    specials, bad_backslash = _scan(text)
    if bad_backslash is not None:
        return Reading(text, False, [], [], (bad_backslash, "backslash"))
    partner = _match_pairs(specials)
    constructs = {}
    invalid = []
    # Inner pairs close first, so deciding pairs in closing order never needs recursion.
    for k in sorted(partner, key=partner.__getitem__):
        constructs[k] = _build(text, specials, partner, k, constructs, invalid)
    top = []
    loose = []
    k = 0
    while k < len(specials):
        pos, c = specials[k]
        if c in _OPENERS and constructs.get(k) is not None:
            top.append(constructs[k])
            k = partner[k] + 1
            continue
        if c == "|":
            return Reading(text, False, [], [], (pos, "bar"), invalid, specials)
        loose.append(pos)
        k += 1
    return Reading(text, True, top, loose, None, invalid, specials)


def when_step(when_text: str, steps: int, first_pass_steps: int | None = None) -> float:
    """The last step of the `from` text, as the v1.10.1 rule computes it: a number with a
    '.' is a fraction of the steps, otherwise a step number; truncated toward zero and
    capped at `steps`. (The webui crashes on an overflowing number such as 1e999; we cap
    +inf at `steps` and keep -inf, which means 'from the first step'.)

    For the hires fix's second pass (`first_pass_steps` given, `steps` the hires steps)
    the webui counts on from the first pass: a fraction 1.5 is half-way through the second
    pass (fractions above 1 never switch in the first), a step number n is step
    n − first_pass_steps of the second pass."""
    value = float(when_text)
    if first_pass_steps is not None:
        value = (value - 1.0) * steps if "." in when_text else value - first_pass_steps
    elif "." in when_text:
        value = value * steps
    if math.isinf(value):
        return steps if value > 0 else value
    return min(steps, int(value))


def walk(constructs):
    """Every construct, outer before inner (no recursion: nesting may be deep)."""
    stack = list(reversed(constructs))
    while stack:
        item = stack.pop()
        yield item
        stack.extend(reversed(item.children))


def render(reading: Reading, step: int, whens: dict, with_positions: bool = False):
    """The text at one step (and, if asked, the source position of each character)."""
    text = reading.text
    out: list[str] = []
    positions: list[int] | None = [] if with_positions else None
    # Work items: ("span", lo, hi, children) or ("text", lo, hi); a stack, so pushed reversed.
    stack = [("span", 0, len(text), reading.top)]
    while stack:
        task = stack.pop()
        if task[0] == "text":
            _, lo, hi = task
            out.append(text[lo:hi])
            if positions is not None:
                positions.extend(range(lo, hi))
            continue
        _, lo, hi, children = task
        pieces = []
        at = lo
        for child in children:
            if child.start < lo or child.end > hi:
                continue
            pieces.append(("text", at, child.start))
            span = _chosen_span(child, step, whens)
            if span is not None:
                pieces.append(("span", span[0], span[1], child.children))
            at = child.end
        pieces.append(("text", at, hi))
        stack.extend(reversed(pieces))
    return "".join(out), positions


def _chosen_span(item, step, whens):
    if item.kind == "emphasis":
        return (item.start, item.end)
    if item.kind == "edit":
        before, after = item.parts
        return before if step <= whens[id(item)] else after
    return item.parts[(step - 1) % len(item.parts)]


def boundaries(reading: Reading, steps: int, first_pass_steps: int | None = None):
    """The steps at which the text may change (always including `steps`) and every
    edit's computed step (keyed by id of its Construct)."""
    result = {steps}
    whens = {}
    for item in walk(reading.top):
        if item.kind == "edit":
            when = when_step(item.when_text, steps, first_pass_steps)
            whens[id(item)] = when
            if when >= 1:
                result.add(when)
        elif item.kind == "alternate":
            result.update(range(1, steps + 1))
    return sorted(result), whens


def check_steps(steps) -> int:
    try:
        count = operator.index(steps)  # any integer type (numpy's too), but not 2.0 or "2"
    except TypeError:
        count = None
    if isinstance(steps, bool) or count is None or count < 1:
        raise PromptError(f"steps must be a whole number of at least 1, got {steps!r}")
    return count


def schedule(text: str, steps: int, first_pass_steps: int | None = None) -> list[tuple[int, str]]:
    """[(until_step, text), ...]: each text is used up to and including its step.

    Exactly the webui v1.10.1 schedule for one prompt (new scheduling); for the hires
    fix's second pass give its steps as `steps` and the first pass's as
    `first_pass_steps` (see `when_step`). A prompt its grammar rejects gives
    [(steps, text)]. Never raises for any text.
    """
    steps = check_steps(steps)
    reading = read(text)
    if not reading.ok:
        return [(steps, text)]
    points, whens = boundaries(reading, steps, first_pass_steps)
    return [(point, render(reading, point, whens)[0]) for point in points]


def _own_specials(reading, item):
    """Positions of an item's own brackets and separators (not those of inner items)."""
    inner = [(child.start, child.end) for child in item.children]
    return [
        pos
        for pos, _ in reading.specials
        if item.start <= pos < item.end and not any(lo <= pos < hi for lo, hi in inner)
    ]


def webui_ambiguous(reading: Reading) -> list:
    """Edits the webui reads one way or the other depending on Python's string hash seed.

    The grammar may also read a construct's closing bracket as a loose character whenever
    the run of brackets and colons right after it (nothing else in between) contains a
    loose one, e.g. `[a:2]]` or `[a:2]:x`. Both readings are valid and lark breaks the tie
    by set iteration order, so the webui's result changes from one start to the next. A
    construct read loose exposes its own brackets and colons as loose too (which can make
    inner edits ambiguous in turn). Alternations are always kept (their `|` needs them).
    """
    text = reading.text
    found = []
    # Siblings right to left: reading one loose makes its brackets loose for those before it.
    levels = [(reading.top, set(reading.loose))]
    while levels:
        items, loose = levels.pop()
        for item in reversed(items):
            if item.kind == "alternate":
                continue
            at = item.end
            while at < len(text) and text[at] in "[]():" and at not in loose:
                at += 1
            if not (at < len(text) and at in loose):
                continue
            if item.kind == "edit":
                found.append(item)
            loose.update(_own_specials(reading, item))
            levels.append((item.children, set(loose)))
    found.sort(key=lambda item: item.start)
    return found
