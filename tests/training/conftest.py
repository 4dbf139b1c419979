"""Fixtures of the training tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from training_helpers import one_thread


@pytest.fixture(autouse=True)
def single_torch_thread() -> Iterator[None]:
    """Every training test runs on one intra-op thread (see ``training_helpers.one_thread``)."""
    with one_thread():
        yield
