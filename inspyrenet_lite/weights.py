"""Find the authors' checkpoint for a mode: the user's file, the caches, the Hub, the release.

Order (first that works wins):

1. ``ckpt`` given by the caller, else ``$INSPYRENET_LITE_CKPT``: must exist;
   not md5-checked (the user's own file; the core's strict key check guards it).
2. A copy already cached by an earlier run (the Hugging Face Hub cache, then
   our own cache), trusted only once its md5 matched; no request is made.
3. ``huggingface_hub.hf_hub_download`` from ``plemeri/InSPyReNet`` (honours
   ``HF_ENDPOINT``, ``HF_HUB_CACHE``, tokens and the Hub's progress bars).
4. The GitHub release file, fetched with ``urllib`` into our cache.
5. The authors' Google Drive file (past Drive's confirmation page), same cache.

Which sources a model has is in :mod:`inspyrenet_lite.registry`. Every
downloaded or cached file is checked against the published md5; one that does
not match is never returned: a download is deleted, a file found in our cache
(where users are told to put theirs) is renamed to ``<name>.refused``. Where no checksum is published, the
first file obtained must have the model's key layout and shapes; its sha256 is
then recorded (``sha256.json`` in the cache, logged) and any later file that
differs is refused. With ``HF_HUB_OFFLINE=1`` only steps 1 and 2 are tried.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path

from huggingface_hub import constants as hf_constants
from huggingface_hub import hf_hub_download, try_to_load_from_cache
from huggingface_hub.utils import are_progress_bars_disabled

from inspyrenet_lite import __version__
from inspyrenet_lite._atomic import atomic_write_text
from inspyrenet_lite._download import (
    DownloadError,
    download_url,
    has_valid_marker,
    file_digest,
    remove_marker,
    unreachable,
    write_marker,
)
from inspyrenet_lite.registry import ENV_RELEASE_URL, HUB_REPO_ID, MODELS, ModelEntry, get_entry  # noqa: F401 (re-exported)

__all__ = [
    "MODES",
    "CheckpointInfo",
    "WeightsUnavailableError",
    "cache_dir",
    "is_cached",
    "resolve_checkpoint",
]

logger = logging.getLogger(__name__)

ENV_CKPT = "INSPYRENET_LITE_CKPT"
ENV_CACHE = "INSPYRENET_LITE_CACHE"

#: Every named model (the registry's table; ``fast``, ``base``, ``base-nightly`` first).
MODES = MODELS
#: Former name of a registry entry (filename, md5, base_size, repo_id, release_url...).
CheckpointInfo = ModelEntry
SHA256_RECORDS = "sha256.json"


class WeightsUnavailableError(RuntimeError):
    """No usable checkpoint could be found or downloaded.

    ``attempts`` lists ``(source, why it failed)`` for every source tried; ``cli_message`` is the
    message as the command line words it (its way out is ``--ckpt PATH``, the Python API's ``ckpt=``).
    """

    def __init__(
        self,
        message: str,
        *,
        mode: str | None = None,
        attempts: list[tuple[str, str]] | None = None,
        cli_message: str | None = None,
    ):
        super().__init__(message)
        self.mode = mode
        self.attempts = list(attempts or [])
        self.cli_message = cli_message or message


def cache_dir() -> Path:
    """Folder for release downloads and verification records.

    ``$INSPYRENET_LITE_CACHE`` if set, else ``inspyrenet-lite/weights`` in the
    Hub's assets cache (``HF_ASSETS_CACHE``, by default ``~/.cache/huggingface/assets``).
    Not inside ``HF_HUB_CACHE`` itself: that folder holds Hub repos only, and
    the Hub's cache scanner (``scan_cache_dir``, ``hf cache ls``) reports
    anything else in it as corrupt.
    """
    env = os.environ.get(ENV_CACHE, "").strip()
    if env:
        return Path(env).expanduser()
    return Path(hf_constants.HF_ASSETS_CACHE) / "inspyrenet-lite" / "weights"


def resolve_checkpoint(mode: str, ckpt: str | os.PathLike[str] | None = None) -> Path:
    """Return the path of a checkpoint for ``mode``, downloading and verifying it if needed.

    Raises ``ValueError`` for an unknown mode, ``FileNotFoundError`` /
    ``ValueError`` for a bad ``ckpt`` or ``$INSPYRENET_LITE_CKPT``, and
    :class:`WeightsUnavailableError` when no verified file can be had.
    """
    info = _mode_info(mode)
    if ckpt is not None:
        return _user_file(ckpt, "ckpt=")
    env_ckpt = os.environ.get(ENV_CKPT, "").strip()
    if env_ckpt:
        return _user_file(env_ckpt, f"${ENV_CKPT}")

    attempts: list[tuple[str, str]] = []
    found = _from_hub_cache(info, attempts) or _from_own_cache(info, attempts)
    if found is None:
        if hub_offline():
            attempts.append(("network (Hub and release URL)", "not tried: offline mode (HF_HUB_OFFLINE is set)"))
        else:
            found = _from_hub(info, attempts) or _from_release(info, attempts) or _from_drive(info, attempts)
    if found is None:
        path = f"/path/to/{info.filename}"
        raise WeightsUnavailableError(
            _unavailable_message(mode, info, attempts, f"Remover(model={mode!r}, ckpt='{path}')"),
            mode=mode,
            attempts=attempts,
            cli_message=_unavailable_message(mode, info, attempts, f"add --ckpt {path} to the command"),
        )
    logger.info("Using %s weights from %s", mode, found)
    return found


def is_cached(info: ModelEntry) -> bool:
    """True if a copy of the model's file is in the Hub cache or ours (not re-verified; no request)."""
    if info.repo_id is not None and isinstance(try_to_load_from_cache(info.repo_id, info.filename), str):
        return True
    return (cache_dir() / info.filename).is_file()


def _mode_info(mode: str) -> ModelEntry:
    return get_entry(mode)


def _user_file(value: str | os.PathLike[str], origin: str) -> Path:
    """Check a checkpoint path the user supplied (exists, is a non-empty file)."""
    try:
        path = Path(os.fspath(value)).expanduser()
    except TypeError:
        raise TypeError(f"{origin} must be a path (str or os.PathLike), got {type(value).__name__}.") from None
    hint = "Pass the path of a .pth or .safetensors checkpoint in the authors' layout"
    if not path.exists():
        raise FileNotFoundError(
            f"Checkpoint given by {origin} does not exist: {path}. {hint}, or unset it to download."
        )
    if not path.is_file():
        raise ValueError(f"Checkpoint given by {origin} is not a file: {path}. {hint}.")
    if path.stat().st_size == 0:
        raise ValueError(f"Checkpoint given by {origin} is empty: {path}. {hint}.")
    return path.resolve()


def hub_offline() -> bool:
    """Whether the Hub is in offline mode (``HF_HUB_OFFLINE``, also when set after the Hub's import)."""
    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return bool(hf_constants.HF_HUB_OFFLINE) or env in {"1", "ON", "YES", "TRUE"}


def _check(path: Path, info: ModelEntry) -> str | None:
    """None if ``path`` may be used for ``info``, else why not.

    A file is hashed once; the result is recorded against its size, mtime and
    inode so that later starts do not re-read 350 MiB.
    """
    if info.md5 is None:
        return _check_unpublished(path, info)
    markers = cache_dir() / ".verified"
    if has_valid_marker(markers, path, info.md5):
        return None
    got = file_digest(path)
    if got != info.md5:
        remove_marker(markers, path)
        return f"md5 {got} does not match the published {info.md5}"
    write_marker(markers, path, info.md5)
    return None


def _sha256_records() -> dict[str, dict[str, str]]:
    try:
        records = json.loads((cache_dir() / SHA256_RECORDS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return records if isinstance(records, dict) else {}


def _check_unpublished(path: Path, info: ModelEntry) -> str | None:
    """No published checksum: trust on first use, then hold every later file to that sha256."""
    markers = cache_dir() / ".verified-sha256"
    record = _sha256_records().get(info.name)
    if isinstance(record, dict) and record.get("sha256"):
        expected = record["sha256"]
        if has_valid_marker(markers, path, expected):
            return None
        got = file_digest(path, "sha256")
        if got != expected:
            remove_marker(markers, path)
            return (
                f"sha256 {got} differs from {expected}, recorded at the first download of {info.name} "
                f"on {record.get('recorded', '?')} (delete {cache_dir() / SHA256_RECORDS} to accept a new file)"
            )
        write_marker(markers, path, expected)
        return None
    problem = _layout_problem(path, info)
    if problem is not None:
        return problem
    got = file_digest(path, "sha256")
    records = _sha256_records()
    records[info.name] = {
        "sha256": got,
        "filename": info.filename,
        "recorded": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        atomic_write_text(cache_dir() / SHA256_RECORDS, json.dumps(records, indent=2, sort_keys=True))
    except OSError as exc:
        logger.warning("Could not record the sha256 of %s: %s", path, exc)
    write_marker(markers, path, got)
    logger.warning(
        "%s has no published checksum; its key layout and shapes match %s, and its sha256 %s is now recorded "
        "(a later file that differs will be refused)",
        info.filename,
        info.name,
        got,
    )
    return None


def _layout_problem(path: Path, info: ModelEntry) -> str | None:
    """None if the file has exactly the model's authors'-layout keys and shapes, else what is wrong."""
    import torch

    from .checkpoint import check_reference_layout, load_checkpoint
    from .modeling.inspyrenet import InSPyReNet

    try:
        state_dict = load_checkpoint(path)
        with torch.device("meta"):
            model = InSPyReNet(**info.architecture())
        check_reference_layout(model, state_dict)
    except ValueError as exc:
        return f"not a {info.name} checkpoint: {str(exc)[:300]}"
    return None


def _from_hub_cache(info: ModelEntry, attempts: list[tuple[str, str]]) -> Path | None:
    if info.repo_id is None:
        return None
    source = f"Hugging Face Hub cache ({hf_constants.HF_HUB_CACHE})"
    cached = try_to_load_from_cache(info.repo_id, info.filename)
    if not isinstance(cached, str):
        attempts.append((source, f"no cached {info.filename} from {info.repo_id}"))
        return None
    return _accept_or_discard(Path(cached), info, source, attempts)


def _from_own_cache(info: ModelEntry, attempts: list[tuple[str, str]]) -> Path | None:
    path = cache_dir() / info.filename
    source = f"inspyrenet-lite cache ({path.parent})"
    if not path.is_file():
        attempts.append((source, f"no cached {info.filename}"))
        return None
    return _accept_or_discard(path, info, source, attempts, keep=True)


def _from_hub(info: ModelEntry, attempts: list[tuple[str, str]]) -> Path | None:
    if info.repo_id is None:
        return None
    source = f"Hugging Face Hub {info.hub_url}"
    reason = unreachable(info.hub_url)
    if reason is not None:
        attempts.append((source, reason))
        return None
    try:
        local = hf_hub_download(
            info.repo_id, info.filename, library_name="inspyrenet-lite", library_version=__version__
        )
    except Exception as exc:  # whatever the Hub's failure, the release URL is the next source
        attempts.append((source, _describe(exc)))
        return None
    return _accept_or_discard(Path(local), info, source, attempts)


def _from_release(info: ModelEntry, attempts: list[tuple[str, str]]) -> Path | None:
    url = info.release_url
    if url is None:
        return None
    dest = cache_dir() / info.filename
    reason = unreachable(url)
    if reason is not None:
        attempts.append((f"GitHub release {url}", reason))
        return None
    try:
        download_url(url, dest, expected_md5=info.md5, progress=not are_progress_bars_disabled(), desc=info.filename)
    except (OSError, ValueError) as exc:  # DownloadError is an OSError; ValueError: a malformed URL
        attempts.append((f"GitHub release {url}", str(exc) or _describe(exc)))
        return None
    if info.md5 is None:
        return _accept_or_discard(dest, info, f"GitHub release {url}", attempts)
    write_marker(cache_dir() / ".verified", dest, info.md5)
    return dest


def _from_drive(info: ModelEntry, attempts: list[tuple[str, str]]) -> Path | None:
    if info.gdrive_id is None:
        return None
    from ._gdrive import drive_download_request

    source = f"Google Drive {info.gdrive_url}"
    dest = cache_dir() / info.filename
    reason = unreachable(info.gdrive_url)
    if reason is not None:
        attempts.append((source, reason))
        return None
    try:
        url, headers = drive_download_request(info.gdrive_id)
        download_url(
            url, dest, expected_md5=info.md5, progress=not are_progress_bars_disabled(), desc=info.filename,
            headers=headers,
        )
    except (OSError, ValueError) as exc:
        attempts.append((source, str(exc) or _describe(exc)))
        return None
    return _accept_or_discard(dest, info, source, attempts)


def _accept_or_discard(
    path: Path, info: ModelEntry, source: str, attempts: list[tuple[str, str]], *, keep: bool = False
) -> Path | None:
    """Return ``path`` if it verifies; otherwise record why and delete it (a download of ours) or,
    with ``keep`` (a file in our cache, where the error message asks users to put theirs), rename it
    aside: it may be the user's only copy of some other checkpoint."""
    reason = _check(path, info)
    if reason is None:
        return path
    logger.warning("Refused %s from %s: %s", path, source, reason)
    if keep:
        aside = _set_aside(path)
        done = f"moved to {aside} (delete it if it is not yours)" if aside else f"could not move it aside: {path}"
    else:
        done = f"deleted {path}" if _remove_file_and_link_targets(path) else f"could not delete it, delete by hand: {path}"
    attempts.append((source, f"{reason}; {done}"))
    return None


def _set_aside(path: Path) -> Path | None:
    """Rename ``path`` to a free ``<name>.refused[-N]`` beside it; None if that fails."""
    for n in range(1, 100):
        aside = path.with_name(f"{path.name}.refused" + (f"-{n}" if n > 1 else ""))
        if aside.exists():
            continue
        try:
            os.rename(path, aside)  # same folder: no copy, and an existing name was skipped above
        except OSError as exc:
            logger.warning("Could not move %s aside: %s", path, exc)
            return None
        return aside
    return None


def _remove_file_and_link_targets(path: Path) -> bool:
    """Delete ``path`` and, if it is a symlink (Hub snapshot -> blob), what it points to.

    Returns False if something could not be deleted; a file left behind is
    still never trusted, since it fails the md5 check again next time.
    """
    chain = [path]
    while chain[-1].is_symlink() and len(chain) < 8:
        target = Path(os.readlink(chain[-1]))
        chain.append(target if target.is_absolute() else chain[-1].parent / target)
    ok = True
    for link in chain:
        try:
            link.unlink(missing_ok=True)
        except OSError as exc:
            logger.warning("Could not delete %s: %s", link, exc)
            ok = False
    return ok


def _describe(exc: BaseException) -> str:
    """One line: the error and, where the Hub wrapped one, its cause."""
    text = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    cause = exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc:
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        text += f" (caused by {type(cause).__name__}: {first})"
    return text[:400]


def _unavailable_message(mode: str, info: ModelEntry, attempts: list[tuple[str, str]], pass_path: str) -> str:
    """Why no checkpoint for ``mode`` could be had and how to supply one; ``pass_path`` is how the
    caller's entry point takes a local file (``Remover(..., ckpt=...)`` or the CLI's ``--ckpt``)."""
    checksum = f"md5 {info.md5}" if info.md5 else "no published checksum"
    tried = "\n".join(f"  - {source}: {why}" for source, why in attempts)
    urls = "".join(f"  {url}\n" for url in (info.hub_url, info.release_url, info.gdrive_url) if url)
    hub_hint = (
        f"or pre-fill the Hub cache online (`hf download {info.repo_id} {info.filename}`) "
        if info.repo_id
        else f"or put the file at {cache_dir() / info.filename} "
    )
    return (
        f"No usable checkpoint for mode {mode!r} ({info.filename}, {checksum}).\n"
        f"Tried:\n{tried}\n"
        "To supply the file by hand, download it on a machine with access from\n"
        f"{urls}"
        "then pass its path:\n"
        f"  {pass_path}\n"
        f"  or set {ENV_CKPT}=/path/to/{info.filename} (CLI and apps)\n"
        + hub_hint
        + "and run with HF_HUB_OFFLINE=1."
    )
