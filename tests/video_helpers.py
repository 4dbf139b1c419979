"""Stand-ins for a Remover in the video tests: one that remembers each frame's map, one with instant maps."""

from __future__ import annotations

import hashlib
import types

import numpy as np


class MemoRemover:
    """A Remover whose Predictor remembers the map of each distinct frame
    (shared by every MemoRemover of the same Remover in the test session)."""

    _caches: dict[int, dict[bytes, np.ndarray]] = {}

    def __init__(self, remover) -> None:
        self.remover = remover
        self.max_pixels = remover.max_pixels
        self.cache = self._caches.setdefault(id(remover), {})
        self.calls = 0
        self.predictor = self  # process_video asks the Remover's Predictor for float maps

    def predict_maps(self, requests, batch_size=1, errors="raise"):
        keys = [hashlib.sha1(np.ascontiguousarray(r.image).tobytes()).digest() + repr(r.hr_blend).encode()
                for r in requests]
        todo = [(k, r) for k, r in zip(keys, requests) if k not in self.cache]
        if todo:
            self.calls += len(todo)
            fresh = self.remover.predictor.predict_maps([r for _, r in todo], batch_size=batch_size)
            for (k, _), out in zip(todo, fresh):
                self.cache[k] = out
        return [self.cache[k] for k in keys]


class GreyRemover:
    """Stands in for the network (instant maps) so a long clip runs in seconds:
    what is measured here is the pipeline's buffering, not the model."""

    max_pixels = None
    backend = types.SimpleNamespace(name="grey")

    @property
    def predictor(self):
        return self

    def predict_maps(self, requests, batch_size=1, errors="raise"):
        return [np.asarray(r.image, dtype=np.float32)[:, :, 1] / 255.0 for r in requests]
