"""``remove(image)``: the notebook one-liner, with the model loaded once per process.

>>> from inspyrenet_lite import remove
>>> cutout = remove("photo.jpg")                 # first call loads the model (seconds)
>>> cutout = remove("other.jpg", type="white")   # later calls pay only for the image

Each distinct (model, device, precision, ckpt, resize, backend) gets one
:class:`~inspyrenet_lite.Remover`, built on first use and kept until
:func:`clear_cache`. Building is serialised (two threads asking for the same
model at once build it once); the Remover itself is thread-safe, so threads
share it. Results come back as the kind given (:meth:`Remover.process`): a
PIL image for a PIL image or a path, a numpy array for an array, PNG bytes
for bytes (in a notebook, pass a path or a PIL image to see the picture).
"""

from __future__ import annotations

import gc
import os
import threading
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .remover import Remover

_removers: dict[tuple, Remover] = {}
_lock = threading.Lock()


def cached_remover(
    model: str | os.PathLike[str] | None = None,
    *,
    device: str | None = None,
    precision: Literal["fp32", "fp16", "bf16", "int8"] = "fp32",
    ckpt: str | os.PathLike[str] | None = None,
    resize: Literal["static", "dynamic"] | None = None,
    backend: Literal["torch", "onnxruntime", "auto"] = "torch",
) -> Remover:
    """The process's :class:`~inspyrenet_lite.Remover` for these settings, built on first use."""
    from .model_source import pick_name
    from .predictor import pick_device

    name = pick_name(model, None)
    key = (
        os.path.abspath(name) if os.path.exists(name) else name, str(pick_device(device)), precision,
        None if ckpt is None else os.path.abspath(os.fspath(ckpt)), resize, backend,
    )
    with _lock:
        remover = _removers.get(key)
        if remover is None:
            from .remover import Remover

            remover = Remover(name, device=device, precision=precision, ckpt=ckpt, resize=resize, backend=backend)
            _removers[key] = remover
        return remover


#: The keyword arguments of :func:`remove` that choose the Remover (the others go to ``process``).
REMOVER_SETTINGS = ("device", "precision", "ckpt", "resize", "backend")


def remove(image: Any, model: str | os.PathLike[str] | None = None, **options: Any) -> Any:
    """Remove the background of ``image`` with a model kept for the next call.

    ``model`` and the settings of :data:`REMOVER_SETTINGS` (``device``, ``precision``, ``ckpt``,
    ``resize``, ``backend``: see :func:`cached_remover`) choose the :class:`~inspyrenet_lite.Remover`;
    the other ``options`` are :meth:`Remover.process`'s (``type``, ``threshold``, ``hr_blend``,
    ``reverse``, ``batch_size``, ``errors``).
    """
    settings = {key: options.pop(key) for key in REMOVER_SETTINGS if key in options}
    return cached_remover(model, **settings).process(image, **options)


def clear_cache() -> None:
    """Forget every cached Remover (their memory is freed once no one else holds them)."""
    with _lock:
        _removers.clear()
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
