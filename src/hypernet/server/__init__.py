"""`hypernet serve`: the webui-compatible HTTP API and the web UI on one model and one
job queue. `Service` is what both faces call; `create_app` builds the ASGI app."""

from .app import create_app
from .service import Limits, ServerPaths, Service

__all__ = ["Limits", "ServerPaths", "Service", "create_app"]
