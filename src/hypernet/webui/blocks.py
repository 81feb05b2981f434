"""The whole web UI: txt2img (with the card tabs), img2img, Strength grid, Train and PNG Info, and
the buttons that carry values from one tab to another."""

from __future__ import annotations

import re

from .cards import tags_in

CSS = """
.hn-error { background: #fde8e8; color: #8a1c1c; border: 1px solid #f5b5b5; border-radius: 6px;
            padding: 8px 12px; margin: 4px 0; white-space: pre-wrap; }
.hn-note { color: var(--body-text-color-subdued); padding: 4px 2px; }
.hn-progress { position: relative; height: 26px; border-radius: 6px; overflow: hidden;
               background: var(--block-background-fill); border: 1px solid var(--border-color-primary); }
.hn-progress-bar { position: absolute; left: 0; top: 0; bottom: 0; background: #f97316; opacity: .55;
                   transition: width .25s; }
.hn-progress-text { position: relative; padding: 0 10px; line-height: 26px; font-size: 13px; }
.hn-cards { display: flex; flex-wrap: wrap; gap: 10px; padding: 6px 0; }
.hn-cards-empty { padding: 16px; color: var(--body-text-color-subdued); }
.hn-card { position: relative; border-radius: 8px; overflow: hidden; cursor: pointer; flex: none;
           box-shadow: 0 1px 4px rgba(0,0,0,.35); outline: 3px solid transparent; transition: outline-color .15s; }
.hn-card:hover { outline-color: #fb923c; }
.hn-card-selected { outline-color: #f97316; }
.hn-card-image { position: absolute; inset: 0; background-color: #f4f4f5; background-repeat: no-repeat;
                 background-size: contain; background-position: center 25%; }
.hn-card-placeholder { display: flex; align-items: center; justify-content: center; }
.hn-card-placeholder span { font-size: 64px; font-weight: 700; color: rgba(255,255,255,.85); }
.hn-card-text { position: absolute; left: 0; right: 0; bottom: 0; padding: 18px 8px 6px;
                background: linear-gradient(rgba(0,0,0,0), rgba(0,0,0,.8) 30%); }
.hn-card-text, .hn-card-text * { color: white !important; }
.hn-card-name { font-weight: 700; font-size: 15px; word-break: break-word; }
.hn-card-folder { font-size: 11px; opacity: .8; }
.hn-card-description { font-size: 12px; opacity: .9; max-height: 4.2em; overflow: hidden; }
.hn-card-info { position: absolute; top: 4px; right: 4px; width: 28px; height: 28px; border-radius: 50%;
                border: none; background: rgba(0,0,0,.55); color: white !important; font: italic bold 15px serif;
                cursor: pointer; padding: 0; }
.hn-card-info:hover { background: rgba(0,0,0,.8); }
.hn-pnginfo th { text-align: left; padding-right: 12px; vertical-align: top; white-space: nowrap; }
#txt2img_seed_row button { align-self: end; }
"""


def grid_from_prompt(prompt: str) -> tuple[str, str | None]:
    """(the prompt without the first hypernetwork's tags, that network's name)."""
    names = [name for kind, name, _ in tags_in(prompt) if kind == "hypernet"]
    if not names:
        return prompt or "", None
    pattern = re.compile(r"<hypernet:" + re.escape(names[0]) + r"(?::[^>]*)?>")
    return " ".join(pattern.sub("", prompt).split()), names[0]


def build(service):
    import gradio as gr

    from . import grid, img2img, pnginfo, train, txt2img
    from .networks import build_cards_tab, render_cards

    with gr.Blocks(title="hypernet") as demo:
        with gr.Tabs(elem_id="tabs") as tabs:
            with gr.Tab("txt2img", id="txt2img", elem_id="tab_txt2img"):
                t2i = txt2img.build(service, lambda kind, prompt, selected, strength:
                                    build_cards_tab(service, kind, prompt, selected, strength))
            with gr.Tab("img2img", id="img2img", elem_id="tab_img2img"):
                img2img.build(service, txt2img.default_size(service))
            with gr.Tab("Strength grid", id="grid", elem_id="tab_grid"):
                g = grid.build(service, txt2img.default_size(service))
            with gr.Tab("Train", id="train", elem_id="tab_train"):
                tr = train.build(service)
            with gr.Tab("PNG Info", id="pnginfo", elem_id="tab_pnginfo"):
                png = pnginfo.build()

        # txt2img -> Strength grid
        def send_to_grid(prompt, negative, steps, sampler, cfg, width, height):
            grid_prompt, name = grid_from_prompt(prompt)
            choices = grid.network_choices(service)
            network = gr.update(choices=choices, value=name) if name else gr.update(choices=choices)
            return (network, grid_prompt, negative, steps, sampler, cfg, width, height, gr.Tabs(selected="grid"))

        t2i["send_to_grid"].click(
            send_to_grid, [t2i[k] for k in ("prompt", "negative", "steps", "sampler", "cfg", "width", "height")],
            [g[k] for k in ("network", "prompt", "negative", "steps", "sampler", "cfg", "width", "height")] + [tabs],
            queue=False)

        # PNG Info -> txt2img
        def send_to_txt2img(text):
            from .common import error_html
            from ..errors import HypernetError

            try:
                values = pnginfo.to_txt2img(text)
            except HypernetError as problem:
                return (gr.skip(),) * 9 + (error_html(problem), gr.skip())
            return (*values, "", gr.Tabs(selected="txt2img"))

        png["send"].click(send_to_txt2img, png["text"],
                          [t2i[k] for k in ("prompt", "negative", "sampler", "schedule", "steps", "cfg", "width",
                                            "height", "seed")] + [png["error"], tabs], queue=False)

        # a new or trained network: refresh the cards and the network lists
        hypernet_listing = t2i["hypernet_cards"]["listing"]

        def refresh_networks(search, sort, size, prompt, created_name=None):
            service.library.refresh()
            choices = grid.network_choices(service)
            train_network = gr.update(choices=choices)
            if created_name and created_name in choices:
                train_network = gr.update(choices=choices, value=created_name)
            return (render_cards(service, "hypernet", search, sort, size, prompt), gr.update(choices=choices),
                    train_network)

        refreshed = [t2i["hypernet_cards"]["cards"], g["network"], tr["network"]]
        tr["create_event"].then(refresh_networks, [*hypernet_listing, tr["name"]], refreshed)
        tr["train_event"].then(refresh_networks, hypernet_listing, refreshed)
    return demo
