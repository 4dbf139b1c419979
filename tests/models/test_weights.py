"""Where checkpoints come from: user paths, caches, the Hub, the release URL, and their failures.

Downloads go to a local fake Hub (tests/fake_hub.py) on 127.0.0.1. The code
under test runs in a subprocess because huggingface_hub reads HF_ENDPOINT and
HF_HUB_OFFLINE when imported. The published md5 is replaced, in that
subprocess, by the md5 of small fake checkpoint bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import pytest
from fake_hub import corrupt, run_python

from inspyrenet_lite.weights import MODES, WeightsUnavailableError, resolve_checkpoint

FAST = "ckpt_fast.pth"
NIGHTLY = "ckpt_base_nightly.pth"
GOOD = random.Random(0).randbytes(200_000)
GOOD_MD5 = hashlib.md5(GOOD).hexdigest()

_SCRIPT = """
import dataclasses, json, logging, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
from inspyrenet_lite import weights
for mode, md5 in {md5s!r}.items():
    weights.MODES[mode] = dataclasses.replace(weights.MODES[mode], md5=md5)
try:
    path = weights.resolve_checkpoint({mode!r})
except Exception as exc:
    out = {{"error": type(exc).__name__, "message": str(exc), "attempts": getattr(exc, "attempts", None)}}
else:
    out = {{"path": str(path)}}
print(json.dumps(out))
"""


def resolve(env: dict[str, str], mode: str = "fast", md5s: dict[str, str | None] | None = None) -> dict:
    """resolve_checkpoint(mode) in a fresh interpreter; {'path'} or {'error', 'message', 'attempts'}."""
    md5s = {"fast": GOOD_MD5} if md5s is None else md5s
    proc = run_python(_SCRIPT.format(md5s=md5s, mode=mode), env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["stderr"] = proc.stderr
    return result


def offline(env: dict[str, str]) -> dict[str, str]:
    return {**env, "HF_HUB_OFFLINE": "1"}


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def assert_nothing_bad_left(root: Path) -> None:
    """No corrupt copy, no half download, no temp file anywhere under ``root``."""
    for path in files_under(root):
        assert not path.name.endswith(".incomplete"), path
        content = path.read_bytes()
        assert content != corrupt(GOOD), f"corrupt download left at {path}"
        assert content != GOOD[: len(GOOD) // 2], f"partial download left at {path}"


# -- the Hub -----------------------------------------------------------------


def test_good_hub_file_is_verified_cached_and_reused_without_any_request(hub, env, tmp_path):
    hub.serve(FAST, GOOD)

    first = resolve(env)
    assert "path" in first, first
    assert Path(first["path"]).is_relative_to(tmp_path / "hf" / "hub")
    assert Path(first["path"]).read_bytes() == GOOD
    assert hub.count("hub") >= 1 and hub.count("release") == 0

    hub.clear_requests()
    second = resolve(env)
    assert second["path"] == first["path"]
    assert hub.requests == []


def test_cached_file_changed_after_verification_is_checked_again_and_refused(hub, env):
    hub.serve(FAST, GOOD)
    path = Path(resolve(env)["path"])
    Path(os.path.realpath(path)).write_bytes(corrupt(GOOD))  # same size, new content

    result = resolve(offline(env))
    assert result["error"] == "WeightsUnavailableError"
    assert "md5" in result["message"]
    assert not path.exists() and not Path(os.path.realpath(path)).exists()


def test_a_file_put_in_our_cache_that_fails_the_md5_is_kept_aside_not_deleted(hub, env, tmp_path):
    """The unavailable-weights message tells users to put the file in our cache: a wrong one there (another
    checkpoint, say their only copy) is refused and renamed aside, never deleted; a later run downloads."""
    placed = tmp_path / "own" / FAST
    placed.parent.mkdir(parents=True)
    mine = b"someone's only copy of another checkpoint"
    placed.write_bytes(mine)
    result = resolve(offline(env))
    assert result["error"] == "WeightsUnavailableError"
    aside = placed.with_name(FAST + ".refused")
    assert "md5" in result["message"] and str(aside) in result["message"]
    assert aside.read_bytes() == mine and not placed.exists()

    hub.serve(FAST, GOOD, hub=404, release="ok")
    placed.write_bytes(mine + b" (a second one)")
    result = resolve(env)
    assert result.get("path") == str(placed), result
    assert placed.read_bytes() == GOOD
    assert aside.read_bytes() == mine
    assert placed.with_name(FAST + ".refused-2").read_bytes() == mine + b" (a second one)"


def test_corrupt_hub_file_is_refused_not_kept_and_release_url_used(hub, env, tmp_path):
    hub.serve(FAST, GOOD, hub="corrupt", release="ok")

    result = resolve(env)
    assert result.get("path") == str(tmp_path / "own" / FAST), result
    assert Path(result["path"]).read_bytes() == GOOD
    assert hub.count("hub") >= 1 and hub.count("release") >= 1
    assert "Refused" in result["stderr"]
    assert_nothing_bad_left(tmp_path)

    hub.clear_requests()
    again = resolve(env)
    assert again["path"] == result["path"]
    assert hub.requests == []


@pytest.mark.parametrize(
    ("hub_behaviour", "release_behaviour"),
    [("corrupt", "corrupt"), (404, "truncated"), ("corrupt", 500)],
)
def test_both_sources_bad_gives_an_error_naming_both_and_how_to_pass_ckpt(
    hub, env, tmp_path, hub_behaviour, release_behaviour
):
    hub.serve(FAST, GOOD, hub=hub_behaviour, release=release_behaviour)

    result = resolve(env)
    assert result["error"] == "WeightsUnavailableError"
    message = result["message"]
    assert f"{hub.endpoint}/plemeri/InSPyReNet/resolve/main/{FAST}" in message
    assert f"{hub.release_url}/{FAST}" in message
    assert "ckpt=" in message and "INSPYRENET_LITE_CKPT" in message
    sources = " ".join(source for source, _ in result["attempts"])
    assert "Hugging Face Hub http" in sources and "GitHub release http" in sources
    assert_nothing_bad_left(tmp_path)
    assert not (tmp_path / "own" / FAST).exists()


def test_a_release_file_corrupted_past_its_first_mebibyte_with_the_right_length_is_refused(hub, env, tmp_path):
    # Beside the "corrupt" cases above (bytes flipped from the very first one on, in a
    # 200 kB file): here the download streams in several chunks and only one byte in
    # the middle of the third MiB differs, so only a hash of every byte can tell.
    good = random.Random(1).randbytes(5 * (1 << 20) // 2)
    bad = bytearray(good)
    bad[len(bad) // 2 + (1 << 20) // 2] ^= 0x01
    hub.serve(FAST, bytes(bad), hub=404, release="ok")

    result = resolve(env, md5s={"fast": hashlib.md5(good).hexdigest()})
    assert result["error"] == "WeightsUnavailableError", result
    release = [why for source, why in result["attempts"] if source.startswith("GitHub release")]
    assert len(release) == 1 and "md5" in release[0] and hashlib.md5(bytes(bad)).hexdigest() in release[0]
    assert hub.count("release") >= 1
    assert not (tmp_path / "own" / FAST).exists()
    assert not [p for p in files_under(tmp_path) if p.stat().st_size == len(bad)], "the bad download was kept"


def test_release_download_shows_a_progress_bar_unless_disabled(hub, env):
    hub.serve(FAST, GOOD, hub=404)
    quiet = resolve(env)  # run_python sets HF_HUB_DISABLE_PROGRESS_BARS=1
    assert "path" in quiet and "100%" not in quiet["stderr"]

    Path(quiet["path"]).unlink()
    shown = resolve({**env, "HF_HUB_DISABLE_PROGRESS_BARS": "0"})
    assert "path" in shown and "100%" in shown["stderr"]


# -- offline ------------------------------------------------------------------


@pytest.mark.parametrize("warmed_from", ["hub", "release"])
def test_offline_with_a_warm_cache_works_without_any_request(hub, env, warmed_from):
    hub.serve(FAST, GOOD, hub="ok" if warmed_from == "hub" else 404)
    warm = resolve(env)
    assert "path" in warm, warm

    hub.clear_requests()
    result = resolve(offline(env))
    assert result.get("path") == warm["path"], result
    assert hub.requests == []


def test_offline_with_an_empty_cache_says_how_to_supply_the_file(hub, env):
    hub.serve(FAST, GOOD)
    result = resolve(offline(env))
    assert result["error"] == "WeightsUnavailableError"
    assert "ckpt=" in result["message"] and "HF_HUB_OFFLINE" in result["message"]
    assert hub.requests == []


# -- base-nightly and the default cache -----------------------------------------


def test_base_nightly_cut_off_download_is_not_kept(hub, env, tmp_path):
    # Without a checksum only the announced length can tell a download was cut short.
    hub.serve(NIGHTLY, GOOD, hub=404, release="truncated")
    result = resolve(env, mode="base-nightly", md5s={})
    assert result["error"] == "WeightsUnavailableError"
    assert "100000 of 200000 bytes" in result["message"]
    assert_nothing_bad_left(tmp_path)


def test_release_files_default_to_the_hub_assets_cache_not_into_the_hub_cache(hub, env, tmp_path):
    # Anything but repo folders inside HF_HUB_CACHE is reported as corrupt by `hf cache scan`.
    del env["INSPYRENET_LITE_CACHE"]
    hub.serve(FAST, GOOD, hub="corrupt")
    result = resolve(env)
    assert Path(result["path"]).is_relative_to(tmp_path / "hf" / "assets")
    hub_cache = tmp_path / "hf" / "hub"
    assert {p.name for p in hub_cache.iterdir()} <= {"models--plemeri--InSPyReNet", ".locks", "CACHEDIR.TAG"}


# -- files given by the user (no download, no md5) ------------------------------


@pytest.fixture
def user_ckpt(tmp_path: Path) -> Path:
    path = tmp_path / "mine.pth"
    path.write_bytes(b"not the published bytes")
    return path


def test_explicit_ckpt_is_returned_unchecked_and_wins_over_the_env_var(user_ckpt, tmp_path, monkeypatch):
    other = tmp_path / "other.pth"
    other.write_bytes(b"x")
    monkeypatch.setenv("INSPYRENET_LITE_CKPT", str(other))
    assert resolve_checkpoint("fast", ckpt=user_ckpt) == user_ckpt.resolve()
    assert resolve_checkpoint("base", ckpt=str(user_ckpt)) == user_ckpt.resolve()


def test_env_var_ckpt_is_used_when_no_ckpt_is_given(user_ckpt, monkeypatch):
    monkeypatch.setenv("INSPYRENET_LITE_CKPT", str(user_ckpt))
    assert resolve_checkpoint("fast") == user_ckpt.resolve()


def test_missing_ckpt_path_raises_file_not_found_naming_it(tmp_path, monkeypatch):
    monkeypatch.delenv("INSPYRENET_LITE_CKPT", raising=False)
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="ckpt=") as info:
        resolve_checkpoint("fast", ckpt=missing)
    assert str(missing) in str(info.value)

    monkeypatch.setenv("INSPYRENET_LITE_CKPT", str(missing))
    with pytest.raises(FileNotFoundError, match="INSPYRENET_LITE_CKPT"):
        resolve_checkpoint("fast")


def test_ckpt_that_is_a_folder_or_empty_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="not a file"):
        resolve_checkpoint("fast", ckpt=tmp_path)
    empty = tmp_path / "empty.pth"
    empty.touch()
    with pytest.raises(ValueError, match="empty"):
        resolve_checkpoint("fast", ckpt=empty)


def test_unknown_mode_is_rejected_with_the_valid_modes(user_ckpt):
    with pytest.raises(ValueError, match="fast, base, base-nightly"):
        resolve_checkpoint("turbo", ckpt=user_ckpt)


def test_modes_match_the_published_files():
    three = ("fast", "base", "base-nightly")
    assert {m: (MODES[m].filename, MODES[m].md5, MODES[m].base_size) for m in three} == {
        "fast": ("ckpt_fast.pth", "9efdbfbcc49b79ef0f7891c83d2fd52f", (384, 384)),
        "base": ("ckpt_base.pth", "d692e3dd5fa1b9658949d452bebf1cda", (1024, 1024)),
        "base-nightly": ("ckpt_base_nightly.pth", None, (1024, 1024)),
    }
    assert all(MODES[m].repo_id == "plemeri/InSPyReNet" for m in three)


def test_release_url_is_the_tagged_release_unless_overridden(monkeypatch):
    monkeypatch.delenv("INSPYRENET_LITE_RELEASE_URL", raising=False)
    assert MODES["base"].release_url == (
        "https://github.com/plemeri/transparent-background/releases/download/1.2.12/ckpt_base.pth"
    )
    monkeypatch.setenv("INSPYRENET_LITE_RELEASE_URL", "http://mirror.example/w/")
    assert MODES["base"].release_url == "http://mirror.example/w/ckpt_base.pth"


def test_error_type_is_a_runtime_error_exported_from_the_package():
    import inspyrenet_lite

    assert inspyrenet_lite.WeightsUnavailableError is WeightsUnavailableError
    assert issubclass(WeightsUnavailableError, RuntimeError)
