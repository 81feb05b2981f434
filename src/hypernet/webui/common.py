"""Small pieces every tab uses: the error box shown next to a field, the progress bar,
and parsing of the comma-separated number lists the forms take."""

from __future__ import annotations

import html
import time

from ..errors import HypernetError

POLL_SECONDS = 0.3


def error_html(error) -> str:
    """A red box with the message (our errors are written for users; anything else is
    named by its type, never a traceback)."""
    if error is None or error == "":
        return ""
    if isinstance(error, HypernetError) or isinstance(error, str):
        message = str(error)
    else:
        message = f"{type(error).__name__}: {error}"
    return f'<div class="hn-error" role="alert">{html.escape(message)}</div>'


def note_html(message: str) -> str:
    return f'<div class="hn-note">{html.escape(message)}</div>' if message else ""


def progress_html(state, job_id: str | None = None, waiting_text: str = "waiting in the queue") -> str:
    """The webui's progress bar: share done, step, ETA, from a `ProgressState`."""
    if state is None or (job_id is not None and not state.runs(job_id)):
        return _bar(0.0, waiting_text)
    fraction = state.progress
    elapsed = time.time() - state.started if state.started else 0.0
    parts = []
    if state.job_count > 1:
        parts.append(f"batch {min(state.job_no + 1, state.job_count)}/{state.job_count}")
    if state.sampling_steps:
        parts.append(f"step {state.sampling_step}/{state.sampling_steps}")
    if fraction > 0.01 and elapsed > 0:
        parts.append(f"ETA {max(0.0, elapsed / fraction - elapsed):.1f} s")
    if state.textinfo and not parts:
        parts.append(html.escape(state.textinfo.split("<br/>")[0]))
    return _bar(fraction, " · ".join(parts) or "starting")


def _bar(fraction: float, text: str) -> str:
    percent = max(0.0, min(1.0, fraction)) * 100
    return (f'<div class="hn-progress"><div class="hn-progress-bar" style="width:{percent:.0f}%"></div>'
            f'<span class="hn-progress-text">{percent:.0f}% · {text}</span></div>')


def number_list(text: str, label: str) -> list[float]:
    """'0, 0.5, 1' -> [0.0, 0.5, 1.0]; a bad entry is named in the error."""
    values = []
    for part in str(text or "").replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            values.append(float(part))
        except ValueError:
            raise HypernetError(f"{label}: {part!r} is not a number (write them like 0, 0.5, 1)") from None
    if not values:
        raise HypernetError(f"{label}: give at least one number, e.g. 0, 0.5, 1")
    return values


def whole_list(text: str, label: str) -> list[int]:
    numbers = number_list(text, label)
    bad = [n for n in numbers if not float(n).is_integer()]
    if bad:
        raise HypernetError(f"{label}: {bad[0]:g} is not a whole number")
    return [int(n) for n in numbers]


def optional_int(value, label: str) -> int | None:
    """A number box left empty (or -1 for seeds) means "not given"."""
    if value is None or value == "":
        return None
    if isinstance(value, float) and not value.is_integer():
        raise HypernetError(f"{label} must be a whole number (got {value:g})")
    return int(value)
