"""The web UI (Gradio), mounted at `/` on the server's app."""


def mount(app, service) -> None:
    """Mount the Gradio UI on `app`; it calls `service` for everything."""
    from .blocks import build

    import gradio as gr

    gr.mount_gradio_app(app, build(service), path="/")
