"""Encoding for the shard writer: re-encoding real H.264 bytes (no mocks)."""

from __future__ import annotations

import pytest
from videos import make_mp4

from vjepa.data.decode import DecodeError, probe
from vjepa.data.encode import transcode


def test_probe_and_transcode() -> None:
    src = make_mp4(num_frames=30, size=(160, 120), fps=30)
    meta = probe(src)
    assert meta == {"fps": 30.0, "num_frames": 30, "width": 160, "height": 120, "duration": 1.0}
    with pytest.raises(DecodeError) as info:
        probe(src[:-200])
    assert info.value.reason == "truncated"
    small = probe(transcode(src, short_side=64, fps=10))
    assert (small["width"], small["height"]) == (84, 64)  # 160 * 64 / 120 = 85.3 -> even
    assert small["fps"] == 10.0 and small["num_frames"] == 10
    same = probe(transcode(src, short_side=480))  # never upscales
    assert (same["width"], same["height"], same["num_frames"]) == (160, 120, 30)
