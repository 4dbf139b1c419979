"""``ServeSettings``: every knob of the HTTP service, checked once when the app is built."""

from __future__ import annotations

from dataclasses import dataclass, field

#: Largest upload accepted by default (bytes of the request body).
DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
#: Largest decoded image accepted by default (pixels).
DEFAULT_SERVE_MAX_PIXELS = 40_000_000
#: Largest network pass a request may ask for (resize=dynamic, hr_blend) by default (pixels).
#: Fits the high-resolution pass of a 4:3 or 3:2 photo at the library's 1280-pixel short side (2.2-2.5 MP);
#: a 2560x1280 dynamic pass (3.3 MP, about 3 GB on the full-size model) is refused.
DEFAULT_MAX_NETWORK_PIXELS = 2_500_000


@dataclass(frozen=True)
class ServeSettings:
    """How the service batches, limits and protects itself.

    max_batch_size: most images per forward; 1 turns batching off.
    max_wait_ms: how long the first request of a batch waits for company.
    queue_size: most requests admitted at once (waiting or running); more get 503 at once.
    timeout_s: per-request deadline (decode + queue + inference + encode); past it, 504.
    max_upload_bytes / max_pixels: 413 above these.
    api_key: when set, every route but health/ready/metrics needs header ``X-Api-Key``.
    cors_origins: allowed CORS origins; empty (default) adds no CORS headers.
    cpu_workers: threads that decode and composite (never the event loop, never the inference thread).
    allow_image_url: the remove.bg ``image_url`` field (off by default: the server would fetch URLs).
    url_timeout_s / url_max_bytes / url_max_redirects: limits of that fetch.
    url_allow_networks: CIDRs exempt from the private-address refusal (for an internal image host).
    max_network_pixels: most pixels of the network pass a request may ask for with ``resize=dynamic``
        or ``hr_blend`` (the pass at the image's own size); above it the request gets 422 naming the cap.
    max_connections: most open connections; above it uvicorn answers 503 (each holds a file descriptor).
    head_timeout_s / body_timeout_s: a connection whose request head is not complete within
        head_timeout_s is closed; a body not complete within body_timeout_s of the head gets 408.
    warmup: run one forward per model before ``/v1/ready`` says yes.
    retry_after_s: the ``Retry-After`` of a 503.
    """

    max_batch_size: int = 4
    max_wait_ms: float = 10.0
    queue_size: int = 32
    timeout_s: float = 60.0
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_pixels: int = DEFAULT_SERVE_MAX_PIXELS
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    cpu_workers: int = 2
    allow_image_url: bool = False
    url_timeout_s: float = 10.0
    url_max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    url_max_redirects: int = 5
    url_allow_networks: tuple[str, ...] = field(default_factory=tuple)
    max_network_pixels: int = DEFAULT_MAX_NETWORK_PIXELS
    max_connections: int = 1000
    head_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    warmup: bool = True
    retry_after_s: int = 1

    def __post_init__(self) -> None:
        _at_least("max_batch_size", self.max_batch_size, 1)
        _at_least("queue_size", self.queue_size, 1)
        _at_least("cpu_workers", self.cpu_workers, 1)
        _at_least("max_upload_bytes", self.max_upload_bytes, 1)
        _at_least("max_pixels", self.max_pixels, 1)
        _at_least("max_network_pixels", self.max_network_pixels, 1)
        _at_least("max_connections", self.max_connections, 1)
        _at_least("url_max_bytes", self.url_max_bytes, 1)
        _at_least("url_max_redirects", self.url_max_redirects, 0)
        _at_least("retry_after_s", self.retry_after_s, 0)
        for name in ("max_wait_ms", "timeout_s", "url_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        for name in ("timeout_s", "head_timeout_s", "body_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a number above 0, got {value!r}")
        if self.api_key is not None and not self.api_key:
            raise ValueError("api_key must not be empty; leave it unset to serve without a key")


def _at_least(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer of at least {minimum}, got {value!r}")
