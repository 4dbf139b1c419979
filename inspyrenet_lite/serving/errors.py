"""``ServeError``: a request the service refuses, with its status and a one-line message."""

from __future__ import annotations


class ServeError(Exception):
    """An answer other than 200: HTTP ``status``, a stable ``code``, a one-line ``message``
    (what was wrong and what to do; never a path, a traceback or a version), the request
    ``field`` at fault if any, and extra response ``headers`` (e.g. Retry-After)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}


def bad_option(field: str, message: str) -> ServeError:
    """422 for a bad value of option ``field``."""
    return ServeError(422, "invalid_option", message if field in message else f"{field}: {message}", field)


def queue_full(retry_after: str) -> ServeError:
    """503 ``busy``: the queue in front of the model is full; ``retry_after`` is the Retry-After value."""
    return ServeError(
        503, "busy", "the server is busy (queue full); retry after the Retry-After seconds",
        headers={"Retry-After": retry_after},
    )
