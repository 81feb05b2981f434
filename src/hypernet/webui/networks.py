"""The card tabs under the prompt (Hypernetworks, LoRA, Textual Inversion): search, sort,
refresh, card size, the info panel with the description editor, and what a click does.

The handlers here are plain functions of the service and the field values, so the
tests call them without a browser; `build_cards_tab` only wires them to components.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import gradio as gr

from ..errors import HypernetError
from .cards import (CARD_JS, DEFAULT_CARD_SIZE, KIND_TITLES, SORTS, cards_for, cards_html, format_multiplier,
                    last_tag, multiplier_of, select_cards, set_multiplier, toggle_tag)
from .common import error_html, note_html


def render_cards(service, kind: str, search: str = "", sort: str = SORTS[0], size=DEFAULT_CARD_SIZE,
                 prompt: str = "") -> str:
    return cards_html(select_cards(cards_for(service, kind), search, sort), size, prompt, kind)


def click_card(service, prompt: str, kind: str, name: str) -> tuple[str, tuple[str, str] | None, float | None]:
    """(new prompt, selected tag, its multiplier): a click toggles the card's tag."""
    multiplier = float(service.options.get("extra_networks_default_multiplier"))
    separator = service.options.get("extra_networks_add_text_separator") or " "
    new_prompt, added = toggle_tag(prompt, kind, name, multiplier, separator)
    if kind == "embedding":
        return new_prompt, None, None
    if added:
        return new_prompt, (kind, name), multiplier
    remaining = last_tag(new_prompt)
    return new_prompt, remaining, multiplier_of(new_prompt, *remaining) if remaining else None


def change_strength(prompt: str, selected, value) -> str:
    """The slider moved: the selected tag (or else the last tag) takes its value."""
    target = tuple(selected) if selected else last_tag(prompt)
    if not target or value is None:
        return prompt
    return set_multiplier(prompt, target[0], target[1], float(value))


def strength_label(selected) -> str:
    return f"Strength of {selected[1]}" if selected else "Strength (click a card)"


def training_settings(service, name: str) -> dict | None:
    """The newest run's settings.json for a network, from the training folder."""
    from ..training.run_folder import other_runs

    root = Path(service.paths.training_dir)
    found = [p for folder in other_runs(root, name) for p in folder.glob("settings*.json")] if root.is_dir() else []
    if not found:
        return None
    newest = max(found, key=lambda p: p.stat().st_mtime)
    try:
        return json.loads(newest.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def card_info(service, kind: str, name: str) -> tuple[str, str]:
    """(info as Markdown, description) for a card's info panel."""
    if kind != "hypernet":
        card = next((c for c in cards_for(service, kind) if c.name == name), None)
        if card is None:
            raise HypernetError(f"no {KIND_TITLES[kind]} file named {name!r}; press Refresh")
        where = f" in `{card.folder}/`" if card.folder else ""
        return f"### {html.escape(name)}\n\n{KIND_TITLES[kind]} file{where}", card.description
    from ..inspection import format_description, inspect_file as describe

    entry = service.resolve_hypernetwork(name)
    info = service.library.info(entry)
    multiplier = format_multiplier(service.options.get("extra_networks_default_multiplier"))
    tag = f"<hypernet:{info['tag_name']}:{multiplier}>"
    lines = [f"### {html.escape(info['tag_name'])}", "", f"Prompt tag: `{tag}`", ""]
    if info["error"]:
        lines += [f"**This file does not load:** {html.escape(info['error'])}"]
    else:
        lines += ["```", format_description(describe(entry.path)), "```"]
    settings = training_settings(service, entry.name)
    if settings:
        keys = ("learning_rate", "batch_size", "gradient_accumulation", "max_steps", "width", "height", "template",
                "caption_dropout", "latent_sampling", "seed")
        config = settings.get("config", settings)
        shown = {k: config[k] for k in keys if k in config}
        if shown:
            lines += ["", "Training settings (newest run in the training folder):", "```",
                      *(f"{k:<22} {v}" for k, v in shown.items()), "```"]
    return "\n".join(lines), info["description"] or ""


def save_description(service, kind: str, name: str, description: str) -> str:
    if kind != "hypernet":
        raise HypernetError("descriptions of LoRA and embedding files are edited in their .txt side-car files")
    from ..loading import PACKAGED_LIBRARY

    entry = service.resolve_hypernetwork(name)
    if entry.root is not None and Path(entry.root).resolve() == PACKAGED_LIBRARY.resolve():
        raise HypernetError(f"{name} is a demo network shipped inside the package; its description is not "
                            f"edited here (train or copy it into {service.paths.hypernet_dir} to have your own)")
    service.library.write_user_metadata(entry, description=description)
    return f"description of {name} saved"


# -- wiring ------------------------------------------------------------------------------


def build_cards_tab(service, kind: str, prompt, selected, strength):
    """The components of one card tab; clicks edit `prompt` and the `selected` state."""
    with gr.Row(elem_classes="hn-cards-controls"):
        search = gr.Textbox(placeholder="Search", show_label=False, elem_id=f"{kind}_cards_search", scale=4)
        sort = gr.Dropdown(list(SORTS), value=SORTS[0], label="Sort", elem_id=f"{kind}_cards_sort", scale=2)
        size = gr.Slider(100, 320, value=DEFAULT_CARD_SIZE, step=10, label="Card size",
                         elem_id=f"{kind}_cards_size", scale=2)
        refresh = gr.Button("Refresh", elem_id=f"{kind}_cards_refresh", scale=1)
    with gr.Group(visible=False, elem_id=f"{kind}_card_info") as info_panel:
        info_text = gr.Markdown(elem_id=f"{kind}_card_info_text")
        description = gr.Textbox(label="Description", lines=2, elem_id=f"{kind}_card_description",
                                 interactive=kind == "hypernet")
        with gr.Row():
            save = gr.Button("Save description", elem_id=f"{kind}_card_save", visible=kind == "hypernet")
            close = gr.Button("Close", elem_id=f"{kind}_card_close")
        info_note = gr.HTML("")
    info_name = gr.State("")
    cards = gr.HTML(render_cards(service, kind), js_on_load=CARD_JS, elem_id=f"{kind}_cards",
                    elem_classes="hn-cards-root")

    def show(search_text, sort_value, size_value, prompt_text):
        return render_cards(service, kind, search_text, sort_value, size_value, prompt_text)

    listing = [search, sort, size, prompt]
    for control in (search.change, sort.change, size.release, prompt.blur):  # blur: outlines follow typed tags
        control(show, listing, cards, queue=False)

    def on_refresh(search_text, sort_value, size_value, prompt_text):
        if kind == "hypernet":
            service.library.refresh()
        return show(search_text, sort_value, size_value, prompt_text), gr.skip()

    refresh.click(on_refresh, listing, [cards, info_note])

    def on_click(prompt_text, chosen, search_text, sort_value, size_value, event: gr.EventData):
        data = getattr(event, "_data", None) or {}
        name, action = data.get("name"), data.get("action", "toggle")
        if not name:
            return (gr.skip(),) * 9
        if action == "info":
            try:
                text, current = card_info(service, kind, name)
            except HypernetError as problem:
                return (gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.update(visible=True), "", "", name,
                        error_html(problem))
            return (gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.update(visible=True), text, current, name, "")
        new_prompt, new_selected, multiplier = click_card(service, prompt_text, kind, name)
        slider = gr.update(label=strength_label(new_selected),
                           **({"value": multiplier} if multiplier is not None else {}))
        html_cards = show(search_text, sort_value, size_value, new_prompt)
        return (new_prompt, new_selected if kind != "embedding" else chosen, slider, html_cards, gr.skip(),
                gr.skip(), gr.skip(), gr.skip(), gr.skip())

    cards.click(on_click, [prompt, selected, search, sort, size],
                [prompt, selected, strength, cards, info_panel, info_text, description, info_name, info_note])

    def on_save(name, text, search_text, sort_value, size_value, prompt_text):
        try:
            message = save_description(service, kind, name, text)
        except HypernetError as problem:
            return error_html(problem), gr.skip()
        return note_html(message), show(search_text, sort_value, size_value, prompt_text)

    save.click(on_save, [info_name, description, search, sort, size, prompt], [info_note, cards])
    close.click(lambda: (gr.update(visible=False), ""), None, [info_panel, info_note], queue=False)
    return {"cards": cards, "search": search, "sort": sort, "size": size, "refresh": on_refresh, "listing": listing}
