"""Prints `uv pip install` options equivalent to this machine's pip configuration
(find-links, index URLs, constraint files), one per line, so scripts/setup.sh can use
the much faster uv and still install from exactly where pip would: uv does not read
pip's configuration, and without its find-links it would fetch a CUDA torch build."""

from __future__ import annotations

import shlex
import subprocess
import sys

# pip option (as in `pip config list`) -> uv option; values may list several, space-separated.
OPTIONS = {
    "find-links": "--find-links",
    "extra-index-url": "--extra-index-url",
    "index-url": "--index-url",
    "constraint": "--constraint",
}


def pip_configuration() -> list[tuple[str, str]]:
    """(option, value) pairs from every pip configuration source, environment included."""
    listing = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False).stdout
    pairs = []
    for line in listing.splitlines():
        key, _, value = line.partition("=")
        option = key.rsplit(".", 1)[-1]
        try:
            value = " ".join(shlex.split(value))
        except ValueError:
            continue
        if option in OPTIONS and value:
            pairs.append((option, value))
    return pairs


def uv_arguments(pairs: list[tuple[str, str]]) -> list[str]:
    arguments: list[str] = []
    seen = set()
    index_url = None
    for option, value in pairs:
        for item in value.split():
            if option == "index-url":
                index_url = item  # one index: the last source read wins
            elif (option, item) not in seen:
                seen.add((option, item))
                arguments += [OPTIONS[option], item]
    if index_url:
        arguments += ["--index-url", index_url]
    return arguments


if __name__ == "__main__":
    print("\n".join(uv_arguments(pip_configuration())))
