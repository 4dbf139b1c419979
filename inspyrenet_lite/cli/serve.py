"""``inspyrenet-lite serve``: the HTTP service (needs the ``[serve]`` extra).

Loads the model once (once per device with ``--devices``: replicas in this
one process; once per process with ``--workers``), then serves
:func:`inspyrenet_lite.serving.create_app` with uvicorn on 127.0.0.1:8000 by
default. SIGTERM (or Ctrl-C) stops accepting, answers the requests in flight
(those not done within ``--graceful-timeout`` get 503) and exits 0 within that
limit, with one process or several.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from inspyrenet_lite.cli import serve_ray
from inspyrenet_lite.cli.model_args import add_model_arguments, load_problem
from inspyrenet_lite.constants import PRECISIONS

API_KEY_ENV = "INSPYRENET_LITE_API_KEY"
_CONFIG_ENV = "INSPYRENET_LITE_SERVE_CONFIG"  # how --workers > 1 hands the options to each worker
#: Exit status of a worker that could not start: uvicorn's supervisor stops on it (any other is restarted).
_STARTUP_FAILURE = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inspyrenet-lite serve",
        description="Serve background removal over HTTP: POST /v1/remove, the remove.bg-compatible "
        "POST /v1.0/removebg, /v1/health, /v1/ready, /v1/models, /metrics, OpenAPI at /docs.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine "
                        "only; 0.0.0.0 for every interface, e.g. in a container)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    add_model_arguments(parser)
    parser.add_argument("--ckpt", default=None, help="a local checkpoint file instead of the download")
    parser.add_argument("--device", default=None, help="torch device (default: cuda, then mps, then cpu)")
    parser.add_argument("--devices", default=None, metavar="LIST",
                        help="one model replica per device in this one process, each batch to a free one: "
                        "all (every GPU, else the CPU), or names such as cuda:0,cuda:1 or cpu,cpu")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32")
    parser.add_argument("--backend", choices=("torch", "onnxruntime", "auto"), default="torch")
    parser.add_argument("--max-batch-size", type=int, default=4, help="most images per forward (1: no batching)")
    parser.add_argument("--max-wait-ms", type=float, default=10.0,
                        help="how long a request waits for others to share its batch (default 10)")
    parser.add_argument("--queue-size", type=int, default=32,
                        help="most requests waiting or running; more get 503 + Retry-After at once (default 32)")
    parser.add_argument("--timeout", type=float, default=60.0, help="per-request deadline in seconds (504 past it)")
    parser.add_argument("--max-upload-mb", type=float, default=20.0, help="largest request body (413 above)")
    parser.add_argument("--max-pixels", type=int, default=40_000_000, help="largest decoded image (413 above)")
    parser.add_argument("--max-network-pixels", type=int, default=None,
                        help="largest network pass one request may ask for with resize=dynamic or hr_blend (the "
                        "image at its own size; memory grows with it); a request above it gets 422 naming the "
                        "limit, it is never silently downscaled (default 2500000: a 4:3 or 3:2 photo's pass)")
    parser.add_argument("--max-connections", type=int, default=1000,
                        help="most open connections (each holds a file descriptor: keep it below `ulimit -n`); "
                        "more get 503 (default 1000)")
    parser.add_argument("--head-timeout", type=float, default=10.0,
                        help="seconds a connection has to send a complete request head; closed past it (default 10)")
    parser.add_argument("--body-timeout", type=float, default=30.0,
                        help="seconds a request body has to arrive after its head; 408 past it (default 30)")
    parser.add_argument("--graceful-timeout", type=float, default=10.0,
                        help="on SIGTERM, seconds the requests in flight have to finish; the rest get 503 and the "
                        "process exits within this limit (default 10)")
    parser.add_argument("--api-key", default=None,
                        help=f"require this key in header X-Api-Key (or set {API_KEY_ENV}; prefer the variable: "
                        "arguments show in the process list)")
    parser.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                        help="allow browser calls from ORIGIN (repeatable; default: no CORS)")
    parser.add_argument("--allow-image-url", action="store_true",
                        help="let remove.bg's image_url make the server fetch public URLs (off by default)")
    parser.add_argument("--cpu-workers", type=int, default=2, help="threads decoding and compositing (default 2)")
    parser.add_argument("--workers", type=int, default=1,
                        help="server processes, each with its own model copy (default 1: one device, batching)")
    ray = parser.add_argument_group("Ray Serve (the [ray] extra)")
    ray.add_argument("--ray", action="store_true", help="serve through Ray Serve: replicas, each with its own model "
                     "and batcher, behind Serve's proxy on --host/--port; a local instance unless --address")
    ray.add_argument("--address", default=None, help="with --ray: join this Ray cluster (HOST:PORT, or auto)")
    ray.add_argument("--replicas", type=int, default=None, metavar="N", help="with --ray: N replicas (default 1)")
    ray.add_argument("--autoscale", default=None, metavar="MIN:MAX",
                     help="with --ray: between MIN and MAX replicas, scaled by ongoing requests")
    ray.add_argument("--replica-cpus", type=float, default=1.0, metavar="C", help="with --ray: CPUs per replica (1)")
    ray.add_argument("--replica-gpus", type=float, default=0.0, metavar="G", help="with --ray: GPUs per replica (0)")
    parser.add_argument("--no-warmup", action="store_true",
                        help="skip the warm-up before /v1/ready (two forwards; the second, timed, is what "
                        "admission weighs the first requests by: without it, a fixed guess)")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return parser


def api_key_from_env(given: str | None = None) -> str | None:
    """The service's API key: ``given`` (``--api-key``), else ``$INSPYRENET_LITE_API_KEY``; ``None``
    (no key) when both are unset or empty. Everything that serves the routes (``serve``, the Space)
    reads the key here."""
    return given or os.environ.get(API_KEY_ENV) or None


def _settings(args: argparse.Namespace) -> Any:
    from inspyrenet_lite.serving import ServeSettings

    chosen = {"max_network_pixels": args.max_network_pixels} if args.max_network_pixels is not None else {}
    return ServeSettings(
        **chosen,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        queue_size=args.queue_size,
        timeout_s=args.timeout,
        max_upload_bytes=max(1, int(args.max_upload_mb * 1024 * 1024)),
        max_pixels=args.max_pixels,
        max_connections=args.max_connections,
        head_timeout_s=args.head_timeout,
        body_timeout_s=args.body_timeout,
        api_key=api_key_from_env(args.api_key),
        cors_origins=tuple(args.cors_origin),
        cpu_workers=args.cpu_workers,
        allow_image_url=args.allow_image_url,
        warmup=not args.no_warmup,
    )


def _load(args: argparse.Namespace, device: str | None = None) -> Any:
    from inspyrenet_lite.predictor import Predictor

    return Predictor.from_pretrained(
        args.model or args.mode or "fast", ckpt=args.ckpt, device=device or args.device, precision=args.precision,
        backend=args.backend,
    )


def _replica_devices(args: argparse.Namespace) -> list[str] | None:
    """The devices of ``--devices`` (None without it); ValueError says what is wrong."""
    if args.devices is None:
        return None
    if args.device is not None:
        raise ValueError("give --device or --devices, not both")
    if args.workers > 1:
        raise ValueError("--devices puts one model per device in one process; it does not combine with "
                         "--workers (several processes): drop one of them")
    from inspyrenet_lite.cli.devices import device_problem
    from inspyrenet_lite.jobs.parallel import parse_devices

    devices = parse_devices(args.devices)
    for name in sorted(set(devices)):
        problem = device_problem(name, "--devices")
        if problem is not None:
            raise ValueError(problem)
    return devices


def _share_cpu_cores(devices: list[str]) -> None:
    """Give each CPU replica its share of the cores (they would oversubscribe them otherwise)."""
    from inspyrenet_lite.jobs.parallel import cpu_threads_per_worker

    threads = cpu_threads_per_worker(devices)
    cpu_replicas = sum(name.split(":")[0] == "cpu" for name in devices)
    if threads is not None and cpu_replicas > 1:
        import torch

        torch.set_num_threads(threads)  # process-wide: every replica's inference thread gets this many
        logging.getLogger(__name__).warning(
            "%d CPU replicas in one process split its cores (%d torch threads each): measured no faster than one "
            "replica with every core (docs/serving.md); for a service on more cores use --ray --replicas N, for "
            "folders the default command's --workers", cpu_replicas, threads)


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _app_from_env() -> Any:
    """The app of one ``--workers`` process (uvicorn factory): options from the environment.
    SIGTERM and SIGINT drain it as they drain one process (see :func:`drain_on_stop`)."""
    from inspyrenet_lite.serving import create_app

    args = build_parser().parse_args(json.loads(os.environ[_CONFIG_ENV]))
    _configure_logging(args.log_level)  # a worker is a new interpreter: main() did not run in it
    try:
        model = _load(args)
    except Exception as exc:  # one line, as with one process; uvicorn then stops instead of restarting workers
        logging.getLogger(__name__).error("cannot load the model: %s", load_problem(exc))
        sys.exit(_STARTUP_FAILURE)
    app = create_app(model, _settings(args))
    drain_on_stop(app.state.serving, args.graceful_timeout)
    return app


def drain_on_stop(state: Any, grace_s: float) -> None:
    """Make this worker's stop signals drain ``state`` first, then stop uvicorn's server as before.

    uvicorn calls the app factory inside its server's signal capture, so the handlers found here
    are that server's; without this a worker stopped accepting and cut what was still running at
    the graceful limit instead of answering it 503 a second before."""
    for stop in (signal.SIGTERM, signal.SIGINT):
        stop_server = signal.getsignal(stop)
        if not callable(stop_server):  # not a server's handler: a default action would end the process anyway
            continue

        def drain_then_stop(signum: int, frame: Any, stop_server: Callable[[int, Any], Any] = stop_server) -> None:
            state.drain(grace_s)
            stop_server(signum, frame)

        signal.signal(stop, drain_then_stop)


def _serve_workers(config: Any) -> bool:
    """Run ``config.workers`` worker processes under uvicorn's supervisor, which on SIGTERM/SIGINT
    signals each worker (they drain) and waits for them. The supervisor also stops listening then:
    its copy of the socket would otherwise keep new connections waiting, unanswered, until it exits.
    False when a worker could not start (it logged why)."""
    from uvicorn.supervisors import Multiprocess

    class Supervisor(Multiprocess):
        def handle_term(self) -> None:
            sock.close()  # the workers close theirs as they begin to drain: then new connections are refused
            super().handle_term()

        def handle_int(self) -> None:
            sock.close()
            super().handle_int()

    sock = config.bind_socket()
    options: dict[str, Any] = {"sockets": [sock]}
    if "target" in inspect.signature(Multiprocess).parameters:  # uvicorn before the supervisor made its own servers
        from uvicorn import Server

        options["target"] = Server(config).run
    supervisor = Supervisor(config, **options)
    supervisor.run()
    return all(process.exitcode != _STARTUP_FAILURE for process in supervisor.processes)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.log_level)
    try:
        import uvicorn

        from inspyrenet_lite.serving import create_app
        from inspyrenet_lite.serving.slowclients import server_options
    except ImportError as exc:
        print(f"inspyrenet-lite serve: error: the serving extra is not installed ({exc.name} missing); "
              'install it with: pip install "inspyrenet-lite[serve]"', file=sys.stderr)
        return 2
    try:
        settings = _settings(args)
        if args.workers < 1:
            raise ValueError(f"--workers must be at least 1, got {args.workers}")
        if not args.graceful_timeout > 0:
            raise ValueError(f"--graceful-timeout must be above 0, got {args.graceful_timeout}")
        devices = _replica_devices(args)
        ray_problem = serve_ray.check_arguments(args)
        if ray_problem is not None:
            raise ValueError(ray_problem)
    except ValueError as exc:
        print(f"inspyrenet-lite serve: error: {exc}", file=sys.stderr)
        return 2
    if args.ray:
        return serve_ray.run(args, settings)
    common = {"host": args.host, "port": args.port, "log_level": args.log_level,
              "timeout_graceful_shutdown": max(1, int(args.graceful_timeout)), **server_options(settings)}
    if args.workers > 1:
        os.environ[_CONFIG_ENV] = json.dumps(list(argv if argv is not None else sys.argv[2:]))
        started = _serve_workers(uvicorn.Config("inspyrenet_lite.cli.serve:_app_from_env", factory=True,
                                                workers=args.workers, **common))
        if not started:
            print("inspyrenet-lite serve: error: a worker could not start (its error is above)", file=sys.stderr)
            return 1
        return 0
    try:
        if devices is None:
            model: Any = _load(args)
        else:
            _share_cpu_cores(devices)
            model = [_load(args, device) for device in devices]
    except Exception as exc:  # one line, no traceback: a name, a file or a download that failed
        print(f"inspyrenet-lite serve: error: cannot load the model: {load_problem(exc)}", file=sys.stderr)
        return 1
    app = create_app(model, settings)
    state = app.state.serving

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            state.drain(args.graceful_timeout)  # in-flight work gets the grace, then 503
            super().handle_exit(sig, frame)

    server = _Server(uvicorn.Config(app, **common))
    # uvicorn re-raises the signal it drained on; handled here, so a graceful stop exits 0.
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, lambda signum, frame: None)
    server.run()  # SIGTERM/SIGINT: stop accepting, answer in-flight requests, run the shutdown, return
    log = logging.getLogger(__name__)
    busy = [thread.name for thread in threading.enumerate() if thread is not threading.current_thread()
            and not thread.daemon and thread.is_alive()]
    if busy:  # an abandoned decode or forward: its answer is not wanted, and waiting could take minutes
        log.info("stopped; not waiting for %d busy thread(s)", len(busy))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    log.info("stopped")
    return 0
