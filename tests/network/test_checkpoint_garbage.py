"""A file that is not a checkpoint is called that, never met with torch's advice to
unpickle it unsafely (issue 9, item 19)."""

from __future__ import annotations

import pickle
import random
import traceback

import pytest

from inspyrenet_lite.checkpoint import load_checkpoint


class _Payload:
    def __reduce__(self):
        return (print, ("unpickled arbitrary code",))


@pytest.mark.parametrize(
    "name, content",
    [
        # Random bytes that make the unpickler raise UnpicklingError, IndexError, KeyError and
        # UnicodeDecodeError (a ValueError: it once slipped through with no file name in it).
        *((f"random{seed}.pth", random.Random(seed).randbytes(4096)) for seed in (0, 2, 20, 195)),
        ("text.pth", b"hello, not a checkpoint " * 20),
        ("plain_pickle.pth", pickle.dumps({"a": 1}, protocol=2)),
        ("evil.pth", pickle.dumps({"payload": _Payload()}, protocol=2)),
        ("garbage.safetensors", b"garbage" * 50),
    ],
)
def test_garbage_is_not_a_checkpoint_and_unsafe_loading_is_never_advised(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert name in message and "is not a checkpoint" in message
    # Neither the message nor anything chained to it suggests unpickling the file unsafely.
    whole = "".join(traceback.format_exception(info.value))
    assert "weights_only" not in whole
