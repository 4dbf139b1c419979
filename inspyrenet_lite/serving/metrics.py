"""Prometheus text-format metrics, kept by hand (no extra dependency): a few counters, a gauge
and two histograms, with label sets bounded by the app's routes."""

from __future__ import annotations

import threading
from collections import defaultdict

#: Methods counted by name; any other is counted as "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.total += 1
        self.sum += value
        for index, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[index] += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        sep = "," if labels else ""
        out = [f'{name}_bucket{{{labels}{sep}le="{_num(b)}"}} {c}' for b, c in zip(self.buckets, self.counts)]
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.total}')
        suffix = f"{{{labels}}}" if labels else ""
        out += [f"{name}_sum{suffix} {self.sum:.6f}", f"{name}_count{suffix} {self.total}"]
        return out


def _label(value: object) -> str:
    """A label value escaped as the text format requires (backslash, double quote, newline)."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Metrics:
    """Counters of the service; thread-safe; :meth:`render` gives the ``/metrics`` text."""

    def __init__(self, max_batch_size: int) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency = _Histogram(LATENCY_BUCKETS)
        self.batch_sizes = _Histogram(tuple(float(n) for n in range(1, max_batch_size + 1)))
        self.queue_depth: dict[str, int] = {}
        self.batches: dict[tuple[str, int, str], int] = defaultdict(int)
        self.rejected_full = 0
        self.timeouts = 0

    def request_done(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request (route is the route's template, never the raw path)."""
        method = method if method in METHODS else "other"  # the client chooses it: keep the label set bounded
        with self._lock:
            self.requests[(method, route, status)] += 1
            self.latency.observe(seconds)

    def batch(self, size: int, model: str = "model", replica: int = 0, device: str = "") -> None:
        """Count one forward of ``size`` images on ``model``'s replica number ``replica`` (on ``device``)."""
        with self._lock:
            self.batch_sizes.observe(float(size))
            self.batches[(model, replica, device)] += 1

    def add_replicas(self, model: str, devices: list[str]) -> None:
        """Show ``model``'s replicas in ``/metrics`` from the start (at 0 batches)."""
        with self._lock:
            for replica, device in enumerate(devices):
                self.batches[(model, replica, device)] += 0

    def set_queue_depth(self, model: str, depth: int) -> None:
        """Requests admitted and not yet answered, for ``model``."""
        with self._lock:
            self.queue_depth[model] = depth

    def count_full(self) -> None:
        with self._lock:
            self.rejected_full += 1

    def count_timeout(self) -> None:
        with self._lock:
            self.timeouts += 1

    def render(self) -> str:
        """The Prometheus text exposition (format 0.0.4)."""
        with self._lock:
            lines = [
                "# HELP inspyrenet_requests_total HTTP requests answered, by route and status.",
                "# TYPE inspyrenet_requests_total counter",
            ]
            for (method, route, status), count in sorted(self.requests.items()):
                labels = f'method="{_label(method)}",route="{_label(route)}",status="{status}"'
                lines.append(f"inspyrenet_requests_total{{{labels}}} {count}")
            lines += [
                "# HELP inspyrenet_request_duration_seconds Time from request to response.",
                "# TYPE inspyrenet_request_duration_seconds histogram",
                *self.latency.lines("inspyrenet_request_duration_seconds"),
                "# HELP inspyrenet_batch_size Images per forward of the network.",
                "# TYPE inspyrenet_batch_size histogram",
                *self.batch_sizes.lines("inspyrenet_batch_size"),
                "# HELP inspyrenet_batches_total Forwards of the network, by model replica and its device.",
                "# TYPE inspyrenet_batches_total counter",
            ]
            lines += [
                f'inspyrenet_batches_total{{model="{_label(m)}",replica="{r}",device="{_label(d)}"}} {n}'
                for (m, r, d), n in sorted(self.batches.items())
            ]
            lines += [
                "# HELP inspyrenet_queue_depth Requests admitted and not yet answered.",
                "# TYPE inspyrenet_queue_depth gauge",
            ]
            lines += [
                f'inspyrenet_queue_depth{{model="{_label(m)}"}} {d}' for m, d in sorted(self.queue_depth.items())
            ]
            lines += [
                "# HELP inspyrenet_rejected_queue_full_total Requests refused because the queue was full (503; 429 on the remove.bg routes).",
                "# TYPE inspyrenet_rejected_queue_full_total counter",
                f"inspyrenet_rejected_queue_full_total {self.rejected_full}",
                "# HELP inspyrenet_deadline_exceeded_total Requests answered 504 past their deadline.",
                "# TYPE inspyrenet_deadline_exceeded_total counter",
                f"inspyrenet_deadline_exceeded_total {self.timeouts}",
            ]
        return "\n".join(lines) + "\n"
