"""Dataset list readers on small annotation files written in each dataset's real format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vjepa.data.formats import (
    ListFormatError,
    detect_format,
    read_folder,
    read_hmdb51,
    read_kinetics,
    read_list,
    read_source,
    read_ssv2,
    read_ucf101,
)


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")  # readers never open videos; the writer does
    return path


def test_folder_recursive_sorted_with_class_folders(tmp_path: Path) -> None:
    for rel in ["b/2.mp4", "b/1.AVI", "a/x/deep.webm", "a/0.mkv", "a/notes.txt", "c/z.m4v"]:
        _touch(tmp_path / rel)
    plain = read_folder(tmp_path)
    rels = [Path(i.path).relative_to(tmp_path).as_posix() for i in plain.items]
    assert rels == ["a/0.mkv", "a/x/deep.webm", "b/1.AVI", "b/2.mp4", "c/z.m4v"]
    assert plain.label_names is None and all(i.label is None for i in plain.items)

    lab = read_folder(tmp_path, labels_from_folders=True)
    assert lab.label_names == ["a", "b", "c"]
    assert [(i.label, i.label_name) for i in lab.items] == [
        (0, "a"),
        (0, "a"),
        (1, "b"),
        (1, "b"),
        (2, "c"),
    ]


def test_folder_labels_need_class_folders(tmp_path: Path) -> None:
    _touch(tmp_path / "top.mp4")
    with pytest.raises(ListFormatError, match="top.mp4"):
        read_folder(tmp_path, labels_from_folders=True)
    with pytest.raises(FileNotFoundError):
        read_folder(tmp_path / "nope")


def test_list_space_separated_with_labels_file(tmp_path: Path) -> None:
    (tmp_path / "labels.txt").write_text("down\nup\n")
    (tmp_path / "train.txt").write_text("down/a b.mp4 0\n\n/abs/v.mp4 1\n")
    listing = read_list(tmp_path / "train.txt")
    assert listing.label_names == ["down", "up"]
    assert [(i.path, i.label, i.label_name) for i in listing.items] == [
        (str(tmp_path / "down/a b.mp4"), 0, "down"),  # a space inside the path survives
        ("/abs/v.mp4", 1, "up"),
    ]


def test_list_csv_with_header_and_root(tmp_path: Path) -> None:
    (tmp_path / "l.csv").write_text("path,label\nx/1.mp4,3\nx/2.mp4,0\n")
    listing = read_list(tmp_path / "l.csv", root="/data")
    assert [(i.path, i.label) for i in listing.items] == [
        ("/data/x/1.mp4", 3),
        ("/data/x/2.mp4", 0),
    ]
    assert listing.label_names is None


def test_list_unlabelled_and_bad_lines(tmp_path: Path) -> None:
    (tmp_path / "u.txt").write_text("a.mp4\nb.mp4\n")
    assert [i.label for i in read_list(tmp_path / "u.txt").items] == [None, None]
    (tmp_path / "bad.txt").write_text("a.mp4 0\nb.mp4 zero\n")
    with pytest.raises(ListFormatError, match=r"bad.txt:2"):
        read_list(tmp_path / "bad.txt")
    (tmp_path / "labels.txt").write_text("only\n")
    (tmp_path / "oob.txt").write_text("a.mp4 1\n")
    with pytest.raises(ListFormatError, match="label 1 outside"):
        read_list(tmp_path / "oob.txt")


def _ucf(tmp_path: Path) -> Path:
    ann = tmp_path / "ucfTrainTestlist"
    ann.mkdir()
    (ann / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n")
    (ann / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nArchery/v_Archery_g08_c02.avi 2\n"
    )
    (ann / "testlist01.txt").write_text("Archery/v_Archery_g01_c01.avi\n")
    (tmp_path / "UCF-101").mkdir()
    return ann


def test_ucf101_train_and_test(tmp_path: Path) -> None:
    ann = _ucf(tmp_path)
    train = read_ucf101(ann, split="train", split_id=1)
    assert train.label_names == ["ApplyEyeMakeup", "Archery"]
    assert [(i.label, i.label_name) for i in train.items] == [(0, "ApplyEyeMakeup"), (1, "Archery")]
    assert train.items[0].path == str(
        tmp_path / "UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi"
    )
    test = read_ucf101(ann, split="test", split_id=1, root="/videos")
    assert [(i.path, i.label) for i in test.items] == [("/videos/Archery/v_Archery_g01_c01.avi", 1)]
    with pytest.raises(FileNotFoundError, match="testlist02"):
        read_ucf101(ann, split="val", split_id=2)
    assert detect_format(ann) == "ucf101"


def test_hmdb51_splits(tmp_path: Path) -> None:
    ann = tmp_path / "splits"
    ann.mkdir()
    (ann / "wave_test_split1.txt").write_text("w1.avi 1 \nw2.avi 2 \nw3.avi 0 \n")
    (ann / "brush_hair_test_split1.txt").write_text("b1.avi 2\nb2.avi 1\n")
    (ann / "wave_test_split2.txt").write_text("w1.avi 2\n")
    train = read_hmdb51(ann, root=tmp_path / "v", split="train")
    assert train.label_names == ["brush_hair", "wave"]
    assert [(Path(i.path).relative_to(tmp_path).as_posix(), i.label) for i in train.items] == [
        ("v/brush_hair/b2.avi", 0),
        ("v/wave/w1.avi", 1),
    ]
    test = read_hmdb51(ann, root=tmp_path / "v", split="test")
    assert [Path(i.path).name for i in test.items] == ["b1.avi", "w2.avi"]
    assert detect_format(ann) == "hmdb51"


def test_kinetics_csv_finds_clips_and_reports_missing(tmp_path: Path) -> None:
    csv_path = tmp_path / "train.csv"
    csv_path.write_text(
        "label,youtube_id,time_start,time_end,split,is_cc\n"
        "abseiling,--07WQ2iBlw,1,11,train,0\n"
        "air drumming,-0Ab1e2AbCd,30,40,train,0\n"
        "abseiling,gone0000000,5,15,train,0\n"
        "abseiling,val00000000,0,10,val,0\n"
    )
    _touch(tmp_path / "train" / "--07WQ2iBlw_000001_000011.mp4")
    _touch(tmp_path / "air drumming" / "-0Ab1e2AbCd_000030_000040.mp4")
    listing = read_kinetics(csv_path, root=tmp_path, split="train")
    assert listing.label_names == ["abseiling", "air drumming"]
    assert [(i.key, i.label, i.start, i.end) for i in listing.items] == [
        ("--07WQ2iBlw_000001_000011", 0, 1.0, 11.0),
        ("-0Ab1e2AbCd_000030_000040", 1, 30.0, 40.0),
    ]
    assert [(s.source, s.reason) for s in listing.skipped] == [
        ("gone0000000_000005_000015", "missing")
    ]
    assert detect_format(csv_path) == "kinetics"
    with pytest.raises(ListFormatError, match="no rows of split 'test'"):
        read_kinetics(csv_path, root=tmp_path, split="test")


def test_ssv2_labels_from_templates(tmp_path: Path) -> None:
    labels = {"Approaching something with your camera": "0", "Pushing something": "1"}
    train = [
        {
            "id": "78687",
            "label": "approaching cup with your camera",
            "template": "Approaching [something] with your camera",
            "placeholders": ["cup"],
        },
        {"id": "42", "label": "pushing pen", "template": "Pushing [something]", "placeholders": []},
    ]
    (tmp_path / "something-something-v2-labels.json").write_text(json.dumps(labels))
    (tmp_path / "something-something-v2-train.json").write_text(json.dumps(train))
    listing = read_ssv2(tmp_path, root="/v")
    assert listing.label_names == ["Approaching something with your camera", "Pushing something"]
    assert [(i.path, i.label, i.key) for i in listing.items] == [
        ("/v/78687.webm", 0, "78687"),
        ("/v/42.webm", 1, "42"),
    ]
    assert detect_format(tmp_path) == "ssv2"
    with pytest.raises(FileNotFoundError, match="validation"):
        read_ssv2(tmp_path, split="val")


def test_read_source_auto_and_errors(tmp_path: Path) -> None:
    _touch(tmp_path / "c1" / "a.mp4")
    assert len(read_source(tmp_path).items) == 1
    (tmp_path / "list.txt").write_text("c1/a.mp4 0\n")
    assert read_source(tmp_path / "list.txt").items[0].label == 0
    with pytest.raises(FileNotFoundError):
        read_source(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="unknown input format"):
        read_source(tmp_path, fmt="imagenet")
