"""`hypernet serve`: the web UI at / and the webui-compatible API at /sdapi/v1 (docs at
/docs), on one loaded model (the embedded toy model unless --model is given)."""

from __future__ import annotations

import sys

from ..errors import HypernetError
from .generate import memory_limit


def register(sub) -> None:
    parser = sub.add_parser("serve", help="web UI and webui-compatible HTTP API", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860, as the webui)")
    parser.add_argument("--model", default=None, help="checkpoint or diffusers folder (default: the embedded toy model)")
    parser.add_argument("--hypernet-dir", default="models/hypernetworks", help="hypernetwork library folder")
    parser.add_argument("--ckpt-dir", default="models/Stable-diffusion", help="checkpoints offered by sd_model_checkpoint")
    parser.add_argument("--lora-dir", default="models/Lora")
    parser.add_argument("--embeddings-dir", default="models/embeddings")
    parser.add_argument("--outputs-dir", default="outputs", help="where saved images go")
    parser.add_argument("--training-dir", default="training", help="training runs' log folder")
    parser.add_argument("--api-auth", default=None, metavar="USER:PASS", help="HTTP basic auth for API and UI")
    parser.add_argument("--queue-size", type=int, default=16, help="jobs that may wait; more are answered 503")
    parser.add_argument("--batch-requests", type=int, default=1, metavar="N",
                        help="run up to N waiting txt2img requests that share size, steps, CFG, sampler ... as one "
                        "UNet batch, each with its own prompt, seed and hypernetworks (default 1: off)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--no-ui", action="store_true", help="serve the API only")
    parser.add_argument("--max-memory", type=memory_limit, default="auto", metavar="SIZE",
                        help="refuse requests needing more memory than this: a size (24G, 800M), auto (default: "
                        "what the device has free) or off")
    parser.set_defaults(func=run)


def run(args) -> int:
    import uvicorn

    from ..server import Limits, ServerPaths, Service, create_app

    if args.api_auth is not None and ":" not in args.api_auth:
        raise HypernetError("--api-auth must look like user:password")
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.api_auth:
        print(f"hypernet serve: warning: listening on {args.host} without --api-auth: anyone who can reach this "
              "machine can generate, train and write files in the library", file=sys.stderr)
    paths = ServerPaths(hypernet_dir=args.hypernet_dir, checkpoint_dir=args.ckpt_dir, lora_dir=args.lora_dir,
                        embeddings_dir=args.embeddings_dir, outputs_dir=args.outputs_dir, training_dir=args.training_dir)
    service = Service(paths, model=args.model, queue_size=args.queue_size, device=args.device,
                      limits=Limits(memory=args.max_memory), batch_requests=args.batch_requests)
    app = create_app(service, ui=not args.no_ui, api_auth=args.api_auth)

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            # interrupt the running job first: uvicorn waits for open requests, and a
            # generation or training request stays open until its job ends (saved first)
            service.jobs.close()
            super().handle_exit(sig, frame)
            # uvicorn raises the signal again after its graceful shutdown, so the process
            # died of it (exit status -15 on SIGTERM); the shutdown is clean: exit 0
            self._captured_signals.clear()

    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=120)
    server = Server(config)
    print(f"hypernet serve: web UI http://{args.host}:{args.port}/  API http://{args.host}:{args.port}/docs",
          flush=True)
    server.run()
    return 0
