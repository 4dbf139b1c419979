"""The HTTP service (``inspyrenet-lite serve``): a FastAPI app over the Predictor.

Needs the ``[serve]`` extra (FastAPI, uvicorn, python-multipart, httpx).
Nothing in the package below imports this one.

>>> from inspyrenet_lite.serving import create_app, ServeSettings
>>> app = create_app(Predictor.from_pretrained("fast"), ServeSettings(max_batch_size=8))
"""

from __future__ import annotations

from .app import create_app
from .settings import ServeSettings

__all__ = ["create_app", "ServeSettings"]
