"""`vjepa shards --check`: validate a shard set before a long job reads it.

:func:`check_shards` reads every sample of every shard (local paths, folders, globs and brace
patterns through :func:`vjepa.data.shards.expand_urls`; http(s):// and s3:// URLs with the
loaders' retries, :func:`vjepa.data.remote.open_shard`) and reports

- samples that do not decode (by default only the first and last frame of each are decoded,
  which catches corrupt and truncated files; ``full`` decodes every frame), listed by key and
  reason, never raised;
- frame counts, sizes, frame rates and durations (distribution summaries);
- the label distribution (and classes of the manifest that have no sample);
- duplicates: samples whose video bytes have the same sha256;
- clips too short for ``min_frames`` (:func:`clip_span` of the config's ``frames_per_clip``
  and ``frame_step``);
- json metadata that disagrees with the decoded video, and shards that are not readable tars.

:func:`format_check` renders the report as a summary table; ``out`` writes it as ``check.json``.

Speed (``tools/bench_frames.py``, under the shared CPU lock, 2 cores; 64-frame 320x240 CRF-18
mp4s, decoder auto = torchcodec): 118 samples/s decoding first + last frame, 27 samples/s with
``full``. One process (no worker pool yet).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tarfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vjepa.data.decode import Backend, DecodeError, open_video
from vjepa.data.remote import ShardError, open_shard
from vjepa.data.shards import expand_urls

log = logging.getLogger(__name__)

CHECK_NAME = "check.json"
VIDEO_EXTS: tuple[str, ...] = ("mp4", "webm", "mkv", "avi", "mov")
"""Tar member suffixes taken as a sample's video (the writer stores ``mp4``)."""
_FULL_CHUNK = 64  # frames decoded per call in full mode: bounded memory on long videos


def clip_span(frames_per_clip: int, frame_step: int) -> int:
    """Fewest source frames holding one clip without padding: ``(frames_per_clip - 1) *
    frame_step + 1``, the rule of :func:`vjepa.data.clips.clip_indices` (a shorter video is
    padded with its last frame or skipped)."""
    return (frames_per_clip - 1) * frame_step + 1


def _open_stream(url: str):
    """A binary stream of one shard: a local file, else the loaders' opener (retried)."""
    if os.path.exists(url):
        return open(url, "rb")
    return open_shard(url)


def _samples(url: str, problems: list[dict]) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {ext: bytes}) of each sample of a shard, in tar order; tar errors are recorded."""
    key, members = None, {}
    try:
        with _open_stream(url) as stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
            for m in tar:
                if not m.isfile():
                    continue
                name = os.path.basename(m.name)
                k, _, ext = name.partition(".")
                if k != key and key is not None:
                    yield key, members
                    members = {}
                key = k
                f = tar.extractfile(m)
                members[ext.lower()] = f.read() if f is not None else b""
    except ShardError as err:  # remote, after the retries
        problems.append({"shard": url, "reason": err.reason, "detail": err.cause[:200]})
    except (tarfile.TarError, OSError, EOFError) as err:
        problems.append({"shard": url, "reason": "bad_tar", "detail": str(err)[:200]})
    if key is not None:
        yield key, members


def _decode(data: bytes, full: bool, backend: Backend) -> dict:
    """Decoded facts of one video; raises :class:`DecodeError`."""
    with open_video(data, backend) as reader:
        n = reader.num_frames
        first = reader.get_frames([0])  # [1, H, W, 3]
        decoded = 1
        if full:
            for s in range(1, n, _FULL_CHUNK):
                decoded += len(reader.get_frames(list(range(s, min(n, s + _FULL_CHUNK)))))
        elif n > 1:
            reader.get_frames([n - 1])
            decoded += 1
        if first.shape[1:3] != (reader.height, reader.width):
            raise DecodeError("bad_size", f"frame {first.shape[1:3]} vs header")
        return {
            "num_frames": n,
            "width": reader.width,
            "height": reader.height,
            "fps": round(float(reader.fps), 3),
            "frames_decoded": decoded,
        }


def _summary(values: list[float]) -> dict | None:
    """min / 5th percentile / median / mean / 95th percentile / max of a list."""
    if not values:
        return None
    a = np.asarray(values, dtype=np.float64)
    q = np.percentile(a, [0, 5, 50, 95, 100])
    return {
        "min": float(q[0]),
        "p5": float(q[1]),
        "median": float(q[2]),
        "mean": float(a.mean()),
        "p95": float(q[3]),
        "max": float(q[4]),
    }


def _manifest_of(urls: list[str]) -> dict | None:
    """The writer's manifest.json next to the shards (when all are in one local folder)."""
    folders = {os.path.dirname(os.path.abspath(u)) for u in urls if os.path.exists(u)}
    if len(folders) != 1 or len(urls) == 0:
        return None
    path = Path(folders.pop()) / "manifest.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def check_shards(
    spec: str,
    *,
    full: bool = False,
    min_frames: int | None = None,
    out: str | Path | None = None,
    backend: Backend = "auto",
) -> dict:
    """Validate every sample of the shard set ``spec``; returns the report (see module doc).

    ``min_frames``: samples with fewer frames are listed in ``too_short`` (use
    :func:`clip_span` of the config). ``out``: a folder (``check.json`` is written in it) or a
    ``.json`` path. Bad samples and unreadable shards are listed, never raised.
    """
    urls = expand_urls(spec)
    t0 = time.perf_counter()
    problems: list[dict] = []  # shard-level
    bad: list[dict] = []  # sample-level: key, shard, reason, detail
    mismatched: list[dict] = []
    good: list[dict] = []
    by_hash: dict[str, list[str]] = defaultdict(list)
    labels: Counter = Counter()
    label_names: dict[int, str] = {}
    frames_decoded = 0
    for url in urls:
        shard = os.path.basename(url)
        for key, members in _samples(url, problems):
            video_ext = next((e for e in VIDEO_EXTS if e in members), None)
            if video_ext is None:
                bad.append({"key": key, "shard": shard, "reason": "no_video", "detail": ""})
                continue
            data = members[video_ext]
            meta: dict = {}
            if "json" in members:
                try:
                    meta = json.loads(members["json"])
                except (json.JSONDecodeError, UnicodeDecodeError) as err:
                    bad.append(
                        {"key": key, "shard": shard, "reason": "bad_json", "detail": str(err)}
                    )
                    continue
            by_hash[hashlib.sha256(data).hexdigest()].append(key)
            try:
                facts = _decode(data, full, backend)
            except DecodeError as err:
                bad.append({"key": key, "shard": shard, "reason": err.reason, "detail": str(err)})
                continue
            except ValueError as err:  # a backend counting fewer frames than its header says
                bad.append({"key": key, "shard": shard, "reason": "truncated", "detail": str(err)})
                continue
            frames_decoded += facts.pop("frames_decoded")
            facts["key"], facts["shard"] = key, shard
            facts["label"] = meta.get("label")
            good.append(facts)
            if meta.get("label") is not None:
                labels[int(meta["label"])] += 1
                if meta.get("label_name") is not None:
                    label_names[int(meta["label"])] = str(meta["label_name"])
            if "num_frames" in meta and meta["num_frames"] != facts["num_frames"]:
                mismatched.append(
                    {"key": key, "json": meta["num_frames"], "decoded": facts["num_frames"]}
                )
    seconds = time.perf_counter() - t0
    total = len(good) + len(bad)
    manifest = _manifest_of(urls)
    names = (manifest or {}).get("label_names")
    if names is None and label_names:
        names = [label_names.get(i, "") for i in range(max(label_names) + 1)]
    duplicates = [keys for keys in by_hash.values() if len(keys) > 1]
    report = {
        "spec": spec,
        "shards": len(urls),
        "samples": total,
        "ok": len(good),
        "full_decode": full,
        "bad": bad,
        "bad_by_reason": dict(sorted(Counter(b["reason"] for b in bad).items())),
        "shard_problems": problems,
        "num_frames": _summary([g["num_frames"] for g in good]),
        "duration_s": _summary([g["num_frames"] / g["fps"] for g in good if g["fps"] > 0]),
        "sizes": {
            f"{w}x{h}": n
            for (w, h), n in Counter((g["width"], g["height"]) for g in good).most_common()
        },
        "fps": {str(f): n for f, n in Counter(g["fps"] for g in good).most_common()},
        "labels": {
            "labelled": sum(labels.values()),
            "unlabelled": len(good) - sum(labels.values()),
            "classes_seen": len(labels),
            "num_classes": len(names) if names is not None else None,
            "counts": {str(k): labels[k] for k in sorted(labels)},
            "names": names,
            "missing_classes": [i for i in range(len(names)) if labels[i] == 0]
            if names is not None and labels
            else [],
        },
        "duplicates": duplicates,
        "duplicate_samples": sum(len(d) - 1 for d in duplicates),
        "min_frames": min_frames,
        "too_short": [
            {"key": g["key"], "num_frames": g["num_frames"]}
            for g in good
            if min_frames is not None and g["num_frames"] < min_frames
        ],
        "meta_mismatch": mismatched,
        "manifest_count": (manifest or {}).get("count"),
        "seconds": round(seconds, 3),
        "samples_per_s": round(total / seconds, 2) if seconds > 0 else None,
        "frames_decoded": frames_decoded,
    }
    if out is not None:
        path = Path(out)
        path = path if path.suffix == ".json" else path / CHECK_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        os.replace(tmp, path)
        report["written_to"] = str(path)
    for b in bad:  # the one place bad samples are logged
        log.info("bad sample %s in %s (%s): %s", b["key"], b["shard"], b["reason"], b["detail"])
    return report


def _fmt_summary(s: dict | None, unit: str = "") -> str:
    if s is None:
        return "-"
    return (
        f"min {s['min']:g}{unit}  p5 {s['p5']:g}  median {s['median']:g}  "
        f"mean {s['mean']:.1f}  p95 {s['p95']:g}  max {s['max']:g}{unit}"
    )


def format_check(report: dict) -> str:
    """A one-screen summary table of a :func:`check_shards` report."""
    lab = report["labels"]
    mode = "every frame" if report["full_decode"] else "first + last frame"
    rows = [
        ("shards", f"{report['shards']}"),
        ("samples", f"{report['samples']} ({report['ok']} ok, {len(report['bad'])} bad)"),
        ("decoded", f"{mode}, {report['samples_per_s']} samples/s"),
        ("frames", _fmt_summary(report["num_frames"])),
        ("duration", _fmt_summary(report["duration_s"], " s")),
        ("sizes", ", ".join(f"{k}: {v}" for k, v in list(report["sizes"].items())[:5]) or "-"),
        ("fps", ", ".join(f"{k}: {v}" for k, v in list(report["fps"].items())[:5]) or "-"),
        (
            "labels",
            f"{lab['classes_seen']} classes seen"
            + (f" of {lab['num_classes']}" if lab["num_classes"] is not None else "")
            + f", {lab['unlabelled']} unlabelled",
        ),
        (
            "duplicates",
            f"{report['duplicate_samples']} samples in {len(report['duplicates'])} groups",
        ),
        (
            "too short",
            f"{len(report['too_short'])} below {report['min_frames']} frames"
            if report["min_frames"] is not None
            else "- (no min_frames given)",
        ),
    ]
    if lab["counts"]:
        counts = list(lab["counts"].values())
        rows.append(("per class", f"min {min(counts)}  max {max(counts)}"))
    if lab["missing_classes"]:
        rows.append(("no samples", ", ".join(map(str, lab["missing_classes"][:10]))))
    if report["meta_mismatch"]:
        rows.append(("json != video", f"{len(report['meta_mismatch'])} samples (num_frames)"))
    if report["manifest_count"] is not None and report["manifest_count"] != report["samples"]:
        rows.append(("manifest", f"says {report['manifest_count']} samples"))
    width = max(len(r[0]) for r in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    for p in report["shard_problems"]:
        lines.append(f"BAD SHARD {p['shard']}: {p['reason']} {p['detail']}")
    for b in report["bad"][:10]:
        lines.append(f"BAD  {b['reason']:<12} {b['key']} ({b['shard']})")
    if len(report["bad"]) > 10:
        lines.append(f"  ... {len(report['bad']) - 10} more in {CHECK_NAME}")
    for keys in report["duplicates"][:5]:
        lines.append(f"DUP  {' = '.join(keys[:4])}")
    for s in report["too_short"][:5]:
        lines.append(f"SHORT {s['key']} ({s['num_frames']} frames)")
    return "\n".join(lines)
