"""Argument parsing helpers shared by sub-commands."""

from __future__ import annotations

import argparse


def number_list(text: str) -> list[float]:
    """'1, 2, 1' -> [1.0, 2.0, 1.0], with an error that names the bad item."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    values = []
    for position, item in enumerate(items, 1):
        try:
            values.append(float(item))
        except ValueError:
            raise argparse.ArgumentTypeError(f"item {position} ({item!r}) of {text!r} is not a number") from None
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r} holds no numbers")
    return values


def integer_list(text: str) -> list[int]:
    values = []
    for position, item in enumerate((i.strip() for i in text.split(",") if i.strip()), 1):
        try:
            values.append(int(item))
        except ValueError:
            raise argparse.ArgumentTypeError(f"item {position} ({item!r}) of {text!r} is not an integer") from None
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r} holds no integers")
    return values


def fraction(what: str, example: str):
    """A parser of numbers in [0, 1) for `what` ("probability", "relative error"), whose
    error names the value and gives `example`."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} {text!r} must be a number, e.g. {example}") from None
        if not 0 <= value < 1:
            raise argparse.ArgumentTypeError(f"{what} {text!r} must be at least 0 and below 1")
        return value

    return parse
