"""The web UI (Gradio), mounted at `/` on the server's app. See docs/webui.md."""


def mount(app, service) -> None:
    """Mount the Gradio UI on `app`; it calls `service` for everything."""
    import gradio as gr

    from .blocks import CSS, build

    gr.mount_gradio_app(app, build(service), path="/", css=CSS, ssr_mode=False, footer_links=["api"])
