"""How ``from_pretrained`` reaches a Hub repo or a folder: fast, clear failures, nothing printed.

* A Hub repo whose host cannot be reached fails in seconds (one TCP
  connection, as for the built-in names: :func:`~inspyrenet_lite._download.unreachable`)
  instead of the Hub client's ~25 s of "Retrying in ..." lines, unless the
  repo is in the Hub cache, which is then used as it is.
* ``HF_HUB_OFFLINE`` (also when set after import) loads from the Hub cache only.
* A repo that does not exist, is private or has no weights gets one line
  saying so and what to do, as a :class:`~inspyrenet_lite.weights.WeightsUnavailableError`.
* A folder without ``config.json`` is supported (the weights' header says the
  architecture), silently: ``hub.py`` reads the folder itself, not through the
  Hub mixin that warns about it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from huggingface_hub import constants as hf_constants
from huggingface_hub import try_to_load_from_cache
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from ._download import unreachable
from .weights import WeightsUnavailableError, hub_offline

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"


def load_pretrained(load: Callable[..., Any], name: str, kwargs: dict[str, Any]) -> Any:
    """Call the Hub mixin's ``load(name, **kwargs)`` for a folder or a Hub repo (see the module docstring)."""
    if os.path.isdir(name):
        return load(name, **kwargs)
    kwargs = dict(kwargs)
    if _cache_only(name, kwargs):
        kwargs["local_files_only"] = True
    try:
        return load(name, **kwargs)
    except (HfHubHTTPError, EntryNotFoundError) as exc:
        raise WeightsUnavailableError(_failure(name, exc), attempts=[(_repo_url(name), str(exc))]) from exc


def _repo_url(repo_id: str) -> str:
    return f"{hf_constants.ENDPOINT.rstrip('/')}/{repo_id}"


def _is_cached(repo_id: str, kwargs: dict[str, Any]) -> bool:
    try:
        found = try_to_load_from_cache(
            repo_id, WEIGHTS_NAME, cache_dir=kwargs.get("cache_dir"), revision=kwargs.get("revision")
        )
    except ValueError:  # not a valid repo id: the Hub client says why
        return False
    return isinstance(found, str)


def _cache_only(repo_id: str, kwargs: dict[str, Any]) -> bool:
    """Whether to load ``repo_id`` from the Hub cache only; raises at once where neither cache nor Hub can serve it."""
    cached = _is_cached(repo_id, kwargs)
    cache = kwargs.get("cache_dir") or hf_constants.HF_HUB_CACHE
    if kwargs.get("local_files_only") or hub_offline():
        if cached:
            return True
        why = "offline mode (HF_HUB_OFFLINE is set)" if hub_offline() else "local_files_only=True"
        raise WeightsUnavailableError(
            f"cannot load the Hub model {repo_id!r}: {why} and it is not in the Hub cache ({cache}); "
            f"download it once with network (`hf download {repo_id}`), or unset HF_HUB_OFFLINE, "
            "or pass a local folder saved with save_pretrained; check the name if you expected it cached",
            attempts=[(f"Hugging Face Hub cache ({cache})", f"no cached {WEIGHTS_NAME} from {repo_id}")],
        )
    if kwargs.get("force_download"):
        cached = False
    reason = unreachable(_repo_url(repo_id))
    if reason is None:
        return False
    if cached:
        logger.warning("The Hub cannot be reached (%s): using the cached copy of %s", reason, repo_id)
        return True
    raise WeightsUnavailableError(
        f"cannot load the Hub model {repo_id!r}: the Hub ({hf_constants.ENDPOINT}) cannot be reached ({reason}) "
        f"and the model is not in the Hub cache ({cache}). Check the network (HF_ENDPOINT, a proxy) and the "
        f"name; or download it once where the Hub is reachable (`hf download {repo_id}`) and run with "
        "HF_HUB_OFFLINE=1; or pass a local folder saved with save_pretrained",
        attempts=[(_repo_url(repo_id), reason)],
    )


def _failure(repo_id: str, exc: BaseException) -> str:
    """One line on why the Hub could not serve ``repo_id``, and what to do."""
    where = f"cannot load the Hub model {repo_id!r} from {hf_constants.ENDPOINT}"
    if isinstance(exc, RevisionNotFoundError):
        return f"{where}: the repo has no such revision; check revision="
    if isinstance(exc, RepositoryNotFoundError):
        return (
            f"{where}: no such repo, or it is private or gated. Check the name (owner/name), log in "
            "(`hf auth login` or HF_TOKEN) if it is yours and private, or pass a local folder"
        )
    if isinstance(exc, LocalEntryNotFoundError):
        return (
            f"{where}: the Hub did not answer and the model is not in the Hub cache. Check the network and the "
            f"name, or download it once (`hf download {repo_id}`) and run with HF_HUB_OFFLINE=1"
        )
    if isinstance(exc, EntryNotFoundError):
        return (
            f"{where}: the repo has no {WEIGHTS_NAME}, so it is not an inspyrenet-lite model "
            "(save one with model.save_pretrained / push_to_hub)"
        )
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{where}: {first}"
