"""The web UI (Gradio), mounted at `/` on the server's app. See docs/webui.md."""


def mount(app, service) -> None:
    """Mount the Gradio UI on `app`; it calls `service` for everything. The cards'
    preview thumbnails have their own small route (added first: the UI at `/` would
    otherwise answer every path)."""
    import gradio as gr
    from fastapi import Response

    from .blocks import CSS, build
    from .cards import Thumbnails, find_card

    thumbnails = Thumbnails()

    @app.get("/webui/thumbnail", include_in_schema=False)
    def thumbnail(kind: str, name: str, v: str = ""):
        card = find_card(service, kind, name)
        data = thumbnails.get(card.preview) if card is not None and card.preview is not None else None
        if data is None:
            return Response(status_code=404)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})

    gr.mount_gradio_app(app, build(service), path="/", css=CSS, ssr_mode=False, footer_links=["api"])
