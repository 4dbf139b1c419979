"""``WorkLedger``: admission by expected wait, counting all the work a request brings.

Every request is weighed on arrival (before its upload is decoded) in work units:
its image's pixels plus a fixed amount for the network pass. The ledger holds the
units of every request admitted and not yet answered, and a running estimate of
seconds per unit measured from answered requests (their time from admission to
answer over the units that were ahead of them plus their own). Before the first
answer the estimate is the warm-up's: the service times a forward pass at the
base size before it reports ready and seeds the ledger with it (``seed``), so a
burst right after a cold start is admitted or refused by a measured time; only
without a warm-up is it a fixed prior. A request whose expected wait (seconds
per unit x units ahead and its own) exceeds its deadline is refused at once
(503 + Retry-After) rather than admitted to time out: decode, the queue, the
network and compositing are all in that wait. A request that finds nothing ahead
is always admitted (it is also what measures a slow server).
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

from PIL import Image

#: Units every request costs besides its pixels: the network pass at a typical base size (384 x 384).
NETWORK_UNITS = 384 * 384
#: Seconds per unit before anything was measured (about a 1-megapixel request in 0.2 s).
PRIOR_SECONDS_PER_UNIT = 2e-7
#: Weight of the newest answer in the estimate.
_WEIGHT = 0.3
#: Admit only while the expected wait is within this share of the deadline (the estimate is an average).
_MARGIN = 0.8


@dataclass
class Ticket:
    """One admitted request: its units and the units that were ahead of it."""

    units: int
    ahead: int


class WorkLedger:
    """The work admitted and not yet answered (use from one event loop)."""

    def __init__(self, prior_seconds_per_unit: float = PRIOR_SECONDS_PER_UNIT) -> None:
        self.seconds_per_unit = prior_seconds_per_unit
        self.measured = False
        self.seeded = False
        self.units = 0
        self.requests = 0

    def seed(self, seconds: float, units: int = NETWORK_UNITS) -> None:
        """A warm-up pass of ``units`` took ``seconds``: the estimate until the first answer.

        A seed never lowers an estimate that was seeded or measured already (several models:
        the slowest counts, a request may go to any). The first answered request still
        replaces the seed, as it does the prior: it measures the whole request (decode,
        network, compositing, encode), the warm-up only the network."""
        if not (seconds > 0 and units > 0):
            raise ValueError(f"a warm-up seed needs seconds > 0 and units > 0, got {seconds!r} and {units!r}")
        sample = seconds / units
        self.seconds_per_unit = max(self.seconds_per_unit, sample) if self.seeded or self.measured else sample
        self.seeded = True

    def expected_wait(self, units: int) -> float:
        """Seconds until a request of ``units`` arriving now would be answered."""
        return self.seconds_per_unit * (self.units + units)

    def seconds_to_drain(self) -> float:
        """Seconds until the work admitted now is expected done."""
        return self.seconds_per_unit * self.units

    def admit(self, units: int, deadline_s: float) -> Ticket | None:
        """A ticket, or ``None`` when the request would not be answered within ``deadline_s``."""
        if self.requests and self.expected_wait(units) > _MARGIN * deadline_s:
            return None
        ticket = Ticket(units, self.units)
        self.units += units
        self.requests += 1
        return ticket

    def done(self, ticket: Ticket, seconds: float, outcome: str) -> None:
        """``ticket``'s request ended after ``seconds``. ``outcome`` "answered" measures the speed;
        "timeout" says the speed is at most what its deadline allowed (the estimate only rises);
        anything else (a refused input, a client gone) only frees its units."""
        self.units -= ticket.units
        self.requests -= 1
        sample = seconds / max(1, ticket.units + ticket.ahead)
        if outcome == "answered":  # the first answer replaces the prior
            weight = _WEIGHT if self.measured else 1.0
            self.seconds_per_unit = (1 - weight) * self.seconds_per_unit + weight * sample
            self.measured = True
        elif outcome == "timeout":
            self.seconds_per_unit = max(self.seconds_per_unit, sample)


def image_units(data: bytes, max_pixels: int, scaled_to: int | None = None) -> int:
    """The work units of the encoded image ``data`` from its header alone (nothing is decoded;
    an unreadable header counts the network pass only: decoding will refuse it)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                pixels = image.width * image.height
    except Exception:  # any header Pillow cannot read: decode answers for it, quickly
        return NETWORK_UNITS
    pixels = min(pixels, max_pixels)
    if scaled_to is not None:  # decoded at full size, then scaled down: both count
        pixels += min(pixels, scaled_to)
    return pixels + NETWORK_UNITS


def retry_after(seconds: float, minimum: int) -> str:
    """A Retry-After value: whole seconds, at least ``minimum`` (and 1)."""
    return str(max(1, minimum, math.ceil(seconds)))
