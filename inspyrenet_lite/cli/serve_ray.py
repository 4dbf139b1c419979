"""``inspyrenet-lite serve --ray``: the service as a Ray Serve application (the ``[ray]`` extra).

Starts a local Ray instance on loopback (or joins ``--address``, with token authentication
when a token is available), starts Serve's HTTP proxy on ``--host``/``--port`` (127.0.0.1:8000
by default), deploys :func:`inspyrenet_lite.integrations.ray_serve.build_app` and waits;
SIGTERM or Ctrl-C deletes the application (and stops a local instance) and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any

APP_NAME = "inspyrenet-lite"


def _error(message: str) -> int:
    print(f"inspyrenet-lite serve: error: {message}", file=sys.stderr)
    return 2


def check_arguments(args: argparse.Namespace) -> str | None:
    """What is wrong with the ``--ray`` options (one line), or None."""
    if not args.ray:
        for flag in ("address", "replicas", "autoscale"):
            if getattr(args, flag) is not None:
                return f"--{flag} goes with --ray"
        return None
    if args.devices is not None or args.workers != 1:
        return "--ray runs replicas on Ray; it does not combine with --devices or --workers: use --replicas N"
    if args.replicas is not None and args.autoscale is not None:
        return "give --replicas N or --autoscale MIN:MAX, not both"
    if args.replicas is not None and args.replicas < 1:
        return f"--replicas must be at least 1, got {args.replicas}"
    if args.autoscale is not None:
        from inspyrenet_lite.integrations.ray_serve import parse_autoscale

        try:
            parse_autoscale(args.autoscale)
        except ValueError as exc:
            return str(exc)
    return None


def run(args: argparse.Namespace, settings: Any) -> int:
    """Deploy and serve until SIGTERM/SIGINT; the exit status."""
    try:
        import ray
        from ray import serve

        from inspyrenet_lite.integrations.ray_serve import build_app, parse_autoscale
    except ImportError as exc:
        return _error(f"--ray needs the ray extra ({exc.name} missing): pip install \"inspyrenet-lite[ray]\"")
    from inspyrenet_lite.cli.ray import join_problem, use_token_if_available

    log = logging.getLogger(__name__)
    try:
        if args.address is not None:
            use_token_if_available()
            ray.init(address=args.address, logging_level=logging.WARNING)
        else:  # advertised on 127.0.0.1, no dashboard (as `inspyrenet-lite ray`)
            ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, logging_level=logging.WARNING)
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
    except Exception as exc:
        reason = join_problem(args.address, exc) if args.address else f"cannot start Ray: {str(exc).splitlines()[0]}"
        return _error(reason)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": args.host, "port": args.port, "request_timeout_s": settings.timeout_s + 5},
                    logging_config={"log_level": "WARNING"})
        # no --device: each replica takes its GPU when --replica-gpus gives it one (Ray hides the others), else cpu
        options = {"device": args.device, "ckpt": args.ckpt, "precision": args.precision, "backend": args.backend}
        application = build_app(
            args.model or args.mode or "fast", settings,
            replicas=args.replicas or 1,
            autoscale=parse_autoscale(args.autoscale) if args.autoscale else None,
            num_cpus=args.replica_cpus, num_gpus=args.replica_gpus, **options,
        )
        serve.run(application, name=APP_NAME, route_prefix="/", blocking=False,
                  logging_config={"log_level": args.log_level.upper(), "enable_access_log": args.log_level == "debug"})
    except Exception as exc:  # a model that cannot load, a port in use...
        _shutdown(ray, serve, args.address)
        return _error(f"cannot deploy on Ray Serve: {str(exc).splitlines()[0]}")
    log.info("serving on http://%s:%d (Ray Serve)", args.host, args.port)
    stop.wait()
    _shutdown(ray, serve, args.address)
    log.info("stopped")
    return 0


def _shutdown(ray: Any, serve: Any, address: str | None) -> None:
    """Remove our application (its replicas finish the requests in flight); a local instance
    then goes with Ray (``serve.shutdown`` would wait for Serve's controller in vain)."""
    try:
        serve.delete(APP_NAME)
    except Exception as exc:  # nothing deployed yet, or the cluster is gone
        logging.getLogger(__name__).warning("could not delete the Serve application: %s", exc)
    finally:
        ray.shutdown()
