"""Warnings for prompts that probably do not say what their author meant.

`check` never raises for any text and never changes how a prompt is read: it explains, with positions
in the text as given, what the webui (and so this package) will make of each doubtful
construct.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import editing
from .emphasis import tokens as emphasis_tokens
from .networks import TYPE_ALIASES, PromptError, find_tags, network_of, remove_tags

_BREAK_WORD = re.compile(r"\bBREAK\b")
_NOT_A_TAG = re.compile(r"<[^<>\n]{0,80}>")


@dataclass(frozen=True)
class PromptWarning:
    """position: index in the checked text; code: a stable short name for the kind."""

    position: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"position {self.position}: {self.message}"


def check(text: str, steps: int | None = None) -> list[PromptWarning]:
    """Warnings about malformed or doubtful constructs, sorted by position.

    With `steps`, prompt-editing steps are checked against the number of steps too.
    Never raises for any text (a `steps` below 1 is refused like `schedule` refuses it).
    """
    if steps is not None:
        steps = editing.check_steps(steps)
    found: dict = {}

    def warn(position: int, code: str, message: str) -> None:
        found.setdefault((position, code), PromptWarning(position, code, message))

    _check_comments(text, warn)
    _check_tags(text, warn)
    stripped, positions = remove_tags(text)
    reading = editing.read(stripped)
    _check_editing(stripped, positions, reading, steps, warn)
    for step_text, step_positions in _step_texts(reading, positions):
        _check_emphasis(step_text, step_positions, warn)
    return sorted(found.values(), key=lambda warning: (warning.position, warning.code))


def _check_comments(text, warn):
    for match in re.finditer(r"#", text):
        line_end = text.find("\n", match.start())
        comment = text[match.start() : line_end if line_end != -1 else len(text)]
        warn(
            match.start(),
            "comment",
            f"{_short(comment)} is a comment for the webui (its 'Enable comments' option, on by default) and is "
            "dropped up to the end of the line; strip_comments() does the same",
        )
        break


_WEBUI_ON_BAD_TAG = {
    "type": "the webui removes the tag and ignores it",
    "name": "the webui looks for an empty name and silently skips it",
    "multiplier": "the webui then activates no network of this type at all",
    "lora-args": "the webui would use them",
}


def _check_tags(text, warn):
    seen = {}
    for tag in find_tags(text):
        kind = TYPE_ALIASES.get(tag.type, tag.type)
        try:
            network = network_of(tag, text)
        except PromptError as error:
            reason = getattr(error, "reason", "tag")
            message = str(error).split(": ", 1)[1]
            warn(tag.start, f"tag-{reason}", f"{message}; extract_networks raises here, {_WEBUI_ON_BAD_TAG[reason]}")
            continue
        if tag.args[0] != tag.args[0].strip():
            warn(
                tag.start,
                "tag-name-spaces",
                f"{tag.text}: spaces around the name; we look up {network.name!r}, the webui looks up "
                f"{tag.args[0]!r} and finds nothing",
            )
        if kind == "hypernet" and len(tag.args) > 2:
            warn(tag.start, "tag-extra-args", f"{tag.text}: arguments after the multiplier are ignored")
        key = (network.type, network.name)
        if key in seen:
            warn(
                tag.start,
                "tag-duplicate",
                f"{tag.text}: {network.type} {network.name!r} is tagged twice (positions {seen[key]} and "
                f"{tag.start}); extract_networks raises, the webui applies it twice",
            )
        else:
            seen[key] = tag.start
    stripped, positions = remove_tags(text)
    for match in _NOT_A_TAG.finditer(stripped):
        body = match.group(0)
        if ":" not in body and not re.fullmatch(r"<\w+>", body):
            continue
        warn(
            positions[match.start()],
            "not-a-tag",
            f"{_short(body)} is not an extra-network tag (that needs <type:name> with a type of letters, digits or _, "
            "and a name); it is sent to the text encoder as text",
        )


def _check_editing(stripped, positions, reading, steps, warn):
    def at(index):
        return positions[index] if index < len(positions) else (positions[-1] + 1 if positions else 0)

    if not reading.ok:
        where, why = reading.failure
        if why == "bar":
            message = (
                "'|' outside an alternation [a|b]: the webui then takes the whole prompt literally, so no "
                "[from:to:when] or [a|b] in it has any effect (write \\| for a literal bar)"
            )
        else:
            message = (
                "a backslash at the end or before a line break: the webui then takes the whole prompt literally, "
                "so no [from:to:when] or [a|b] in it has any effect"
            )
        warn(at(where), "not-parsed", message)
        return
    reasons = {
        "paren": "round brackets hold at most one ':' and no '|'; the webui reads these as emphasis brackets "
        "with the colons as text",
        "mixed": "':' and '|' cannot be mixed in one [ ]; read as emphasis brackets and text, not editing or "
        "alternation",
        "colons": "prompt editing takes at most [from:to:when]; with more colons it is read as emphasis "
        "brackets and text",
        "when": "the part after the last ':' is not a step number, so this is not prompt editing; it is read "
        "as emphasis brackets ([ ] = ÷1.1) and text",
        "inner": "a bracket pair inside it is not valid, so this is not prompt editing or alternation; it is read "
        "as emphasis brackets and text",
    }
    for start, end, why in reading.invalid_pairs:
        if why in reasons:
            warn(at(start), f"not-editing-{why}", f"{_short(stripped[start:end])}: {reasons[why]}")
    for item in editing.webui_ambiguous(reading):
        warn(
            at(item.start),
            "webui-ambiguous",
            f"{_short(stripped[item.start:item.end])} is directly followed by a stray bracket or colon; the "
            "webui reads it as prompt editing or as plain text depending on a random per-start seed; we always "
            "read it as editing (put a space after it, or escape the stray bracket)",
        )
    for item in editing.walk(reading.top):
        if item.kind != "edit":
            continue
        written = item.when_text
        if steps is not None:
            when = editing.when_step(written, steps)
            if when >= steps:
                warn(
                    at(item.start),
                    "edit-never",
                    f"{_short(stripped[item.start:item.end])}: switch step {written} is at or past the end of "
                    f"{steps} steps, so the 'to' part is never used",
                )
            elif when < 1:
                warn(
                    at(item.start),
                    "edit-always",
                    f"{_short(stripped[item.start:item.end])}: switch step {written} comes before the first step, "
                    "so the 'from' part is never used",
                )
        elif "." in written and float(written) >= 1:
            warn(
                at(item.start),
                "edit-never",
                f"{_short(stripped[item.start:item.end])}: {written} has a '.', so it is a fraction of the steps; "
                "1.0 or more means the 'to' part is never used (write a whole number for a step)",
            )
        elif float(written) <= 0 or ("." not in written and float(written) < 1):
            warn(
                at(item.start),
                "edit-always",
                f"{_short(stripped[item.start:item.end])}: switch step {written} comes before the first step, "
                "so the 'from' part is never used",
            )


def _step_texts(reading, positions):
    """Texts the schedule can produce (every 'from', every 'to', every alternative at least
    once), each with the source position of each character."""
    if not reading.ok:
        return [(reading.text, positions)]
    constructs = list(editing.walk(reading.top))
    options = max((len(item.parts) for item in constructs if item.kind == "alternate"), default=1)
    seen = set()
    result = []
    for side in (float("inf"), float("-inf")):  # every edit on its 'from', then on its 'to'
        whens = {id(item): side for item in constructs if item.kind == "edit"}
        for step in range(1, min(options, 16) + 1):
            text, local = editing.render(reading, step, whens, with_positions=True)
            if text not in seen:
                seen.add(text)
                result.append((text, [positions[index] for index in local]))
    return result


def _check_emphasis(text, positions, warn):
    round_open: list[int] = []
    square_open: list[int] = []
    colons: dict = {}  # round bracket start -> first plain colon inside it
    for kind, value, start, end in emphasis_tokens(text):
        where = positions[start]
        if kind == "open":
            (round_open if value == "(" else square_open).append(start)
        elif kind == "close":
            own, other = (round_open, square_open) if value == ")" else (square_open, round_open)
            if not own:
                warn(where, "unmatched-close", f"{value!r} closes nothing; the webui reads it as text")
                continue
            opened = own.pop()
            if other and other[-1] > opened:
                warn(
                    where,
                    "crossed-brackets",
                    f"{value!r} closes the bracket at position {positions[opened]} while a bracket opened after it "
                    "is still open; the webui weighs the overlap by both",
                )
            if value == ")" and opened in colons:
                colon = colons.pop(opened)
                warn(
                    positions[colon],
                    "weight-not-a-number",
                    f"the weight {_short(text[colon + 1 : start], 20)} is not a number; the colon and what follows "
                    "are read as text and the bracket weighs ×1.1",
                )
        elif kind == "weight":
            if round_open:
                colons.pop(round_open.pop(), None)
            else:
                warn(where, "weight-without-bracket", f"{_short(text[start:end])} has no '(' to close; read as text")
        elif kind == "bad-weight":
            warn(
                where,
                "weight-not-a-number",
                f"the weight {value!r} is not a number: the webui stops with an error; here the colon is read as "
                "text and the bracket closes with ×1.1",
            )
        elif kind == "text":
            if value == ":" and round_open:
                colons.setdefault(round_open[-1], start)
            if (round_open or square_open) and "BREAK" in value:
                for match in _BREAK_WORD.finditer(value):
                    warn(
                        positions[start + match.start()],
                        "break-in-brackets",
                        "BREAK inside brackets does not start a new chunk; it is read as the word 'break' with "
                        "the brackets' weight",
                    )
        elif kind == "literal" and value == "":
            following = text[end : end + 1]
            warn(
                where,
                "dropped-backslash",
                f"a backslash before {following!r} is dropped (only ( ) [ ] and \\ can be escaped)"
                if following
                else "a backslash at the end is dropped",
            )
    for opened in round_open:
        warn(
            positions[opened],
            "unclosed-bracket",
            "'(' is never closed; the webui applies ×1.1 to the rest of the prompt",
        )
    for opened in square_open:
        warn(
            positions[opened],
            "unclosed-bracket",
            "'[' is never closed; the webui applies ÷1.1 to the rest of the prompt",
        )


def _short(text: str, limit: int = 40) -> str:
    text = text.replace("\n", "\\n")
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")
