"""Ray Serve deployment of the HTTP service (``inspyrenet-lite serve --ray``; the ``[ray]`` extra).

Each replica is the app :func:`inspyrenet_lite.serving.create_app` builds, unchanged (same
routes, limits, key and answers), with its own model and micro-batcher. Ray Serve balances
the replicas, queues what they cannot take yet (503 past ``max_queued_requests``) and adds or
removes replicas by ongoing requests. A light front deployment (no model, no CPU) is the HTTP
ingress: it hands each request to a replica through a handle and, when that replica dies with
the request (killed, its node lost), to another one, so a lost replica costs time, not a 500.

>>> from ray import serve
>>> from inspyrenet_lite.integrations.ray_serve import build_app
>>> serve.run(build_app(model="fast", replicas=2), route_prefix="/")
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..serving.admission import retry_after
from ..serving.errors import ServeError, queue_full
from ..serving.settings import ServeSettings
from .forwarding import ForwardedRequest, ForwardedResponse, call_asgi

logger = logging.getLogger(__name__)

#: The service deployment's name (one per Serve application): the replicas that hold a model.
DEPLOYMENT_NAME = "InSPyReNetService"

#: The ingress deployment's name: it hands each request to a service replica (no model, no CPU).
FRONT_NAME = "InSPyReNetFront"

#: How many replicas a request is tried on when the one running it dies.
FORWARD_ATTEMPTS = 3


@dataclass(frozen=True)
class ServeLimits:
    """Ray Serve's admission knobs, derived from :class:`ServeSettings`.

    max_ongoing_requests: requests one replica holds at once: a batch running and one collecting.
    max_queued_requests: requests Serve queues in front of the replicas (503 past it).
    target_ongoing_requests: what the autoscaler aims at per replica (one full batch).
    """

    max_ongoing_requests: int
    max_queued_requests: int
    target_ongoing_requests: int

    @classmethod
    def from_settings(cls, settings: ServeSettings) -> ServeLimits:
        ongoing = 2 * settings.max_batch_size
        return cls(ongoing, settings.queue_size, settings.max_batch_size)


def parse_autoscale(text: str) -> tuple[int, int]:
    """``"MIN:MAX"`` as two integers, 0 <= MIN <= MAX, MAX >= 1; ValueError says what is wrong."""
    low, sep, high = text.partition(":")
    if not sep or not low.strip().isdigit() or not high.strip().isdigit():
        raise ValueError(f"--autoscale wants MIN:MAX replicas such as 1:4, got {text!r}")
    minimum, maximum = int(low), int(high)
    if maximum < 1 or minimum > maximum:
        raise ValueError(f"--autoscale {text}: MAX must be at least 1 and at least MIN")
    return minimum, maximum


def model_loader(name: str, **options: Any) -> Callable[[], Any]:
    """A picklable function that loads ``name`` (a registry name, Hub repo or save_pretrained
    folder) with :meth:`Predictor.from_pretrained` options such as ``device`` or ``ckpt``."""
    from ..predictor import Predictor

    return functools.partial(Predictor.from_pretrained, name, **options)


def replica_app(model: Any, settings: ServeSettings) -> Any:
    """The app of one replica: loads and warms its model first, so that Serve routes to the replica
    only once it holds a model (the app's own background warm-up would leave a window of 503s)."""
    from ..serving import create_app
    from ..serving.state import as_predictor

    loaded = model() if callable(model) and not hasattr(model, "predict_maps") else model
    if settings.warmup:
        as_predictor(loaded).warmup()
    return create_app(loaded, dataclasses.replace(settings, warmup=False))


class _Replica:
    """One Serve replica of the service (the ingress wrapper holds the app in ``_asgi_app`` and
    runs its lifespan)."""

    async def forward(self, request: ForwardedRequest) -> ForwardedResponse:
        """``request`` answered by this replica's app, as the front deployment sends it."""
        return await call_asgi(self._asgi_app, request)  # type: ignore[attr-defined]

    def check_health(self) -> None:
        """Serve's health probe: a replica whose model failed is replaced."""
        state = getattr(getattr(getattr(self, "_asgi_app", None), "state", None), "serving", None)
        if state is not None and state.failed:
            raise RuntimeError(f"the model failed: {state.failed}")


class _Front:
    """The application's ingress: each HTTP request goes to a service replica through a handle,
    and goes again to another one when its replica died with it (Serve's proxy answered those 500;
    removing a background is the same work twice). Serve's own refusals become the service's 503."""

    def __init__(self, service: Any, settings: ServeSettings, attempts: int = FORWARD_ATTEMPTS) -> None:
        self.service, self.settings, self.attempts = service, settings, attempts

    async def __call__(self, request: Any) -> Any:
        from ray.exceptions import RayActorError
        from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

        forwarded = await ForwardedRequest.read(request, self.settings.max_upload_bytes)
        for attempt in range(1, self.attempts + 1):
            try:
                answer = await self.service.forward.remote(forwarded)
            except RayActorError:
                logger.warning("a replica died during a request; %s", "retrying" if attempt < self.attempts else "503")
                continue
            except BackPressureError as exc:
                wait = retry_after(exc.retry_after_s or 0, self.settings.retry_after_s)
                return _refusal(forwarded.path, queue_full(wait))
            except DeploymentUnavailableError:
                break
            return answer.to_starlette()
        return _refusal(forwarded.path, ServeError(
            503, "unavailable", "no replica could take the request just now; retry shortly", headers={"Retry-After": "5"},
        ))


def _refusal(path: str, error: ServeError) -> Any:
    from starlette.responses import JSONResponse

    from ..serving.app import error_body, error_status

    return JSONResponse(error_body(path, error), status_code=error_status(path, error), headers=error.headers)


def build_app(
    model: Any = "fast",
    settings: ServeSettings | None = None,
    *,
    replicas: int = 1,
    autoscale: tuple[int, int] | None = None,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    **load_options: Any,
) -> Any:
    """A Ray Serve application of the service, for ``serve.run`` or your own composition.

    model: a model name, Hub repo or save_pretrained folder (loaded on each replica with
    ``load_options``, e.g. ``device="cpu"``, ``ckpt=...``, ``precision=...``), a picklable
    zero-argument function returning a Predictor/Remover, or a Predictor (shipped to every replica).
    settings: the service's :class:`ServeSettings`; its batch and queue sizes set Serve's
    ``max_ongoing_requests``, ``max_queued_requests`` and the autoscaling target (:class:`ServeLimits`).
    replicas / autoscale: a fixed count, or (MIN, MAX) scaled by ongoing requests.
    num_cpus / num_gpus: Ray resources of each replica.
    """
    from ray import serve

    settings = settings or ServeSettings()
    if isinstance(model, str):
        model = model_loader(model, **load_options)
    elif load_options:
        raise TypeError("load options (device, ckpt, ...) only go with a model name or folder")
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise ValueError(f"replicas must be an integer of at least 1, got {replicas!r}")
    limits = ServeLimits.from_settings(settings)
    options: dict[str, Any] = {
        "name": DEPLOYMENT_NAME,
        "max_ongoing_requests": limits.max_ongoing_requests,
        "max_queued_requests": limits.max_queued_requests,
        "ray_actor_options": {"num_cpus": num_cpus, "num_gpus": num_gpus},
        "health_check_period_s": 5,
    }
    if autoscale is not None:
        minimum, maximum = autoscale
        options["autoscaling_config"] = {
            "min_replicas": minimum, "max_replicas": maximum, "initial_replicas": max(1, minimum),
            "target_ongoing_requests": limits.target_ongoing_requests,
        }
    else:
        options["num_replicas"] = replicas
    def build() -> Any:  # a plain function: Serve calls it on each replica
        return replica_app(model, settings)

    service = serve.deployment(serve.ingress(build)(_Replica), **options).bind()
    replicas_at_most = autoscale[1] if autoscale is not None else replicas
    front = serve.deployment(
        _Front, name=FRONT_NAME, num_replicas=1, ray_actor_options={"num_cpus": 0},
        # holds what every replica holds and queues, and answers its own overflow as Serve's proxy would
        max_ongoing_requests=replicas_at_most * limits.max_ongoing_requests + limits.max_queued_requests,
        max_queued_requests=limits.max_queued_requests,
    )
    return front.bind(service, settings)
