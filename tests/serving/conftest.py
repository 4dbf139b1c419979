"""Fixtures of the serving tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def box_service() -> Iterator[str]:
    """Base URL of the service on a loopback port whose predictor is ``serving_helpers.BoxPredictor``
    (instant, known maps): for tests of the HTTP surface, not of the network."""
    from serving_helpers import BoxPredictor, running

    from inspyrenet_lite.serving import ServeSettings, create_app

    with running(create_app(BoxPredictor(), ServeSettings())) as url:
        yield url
