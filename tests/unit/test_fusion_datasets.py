import csv
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emoflow.errors import InputError
from emoflow.fusion import datasets
from emoflow.fusion.adapters import build_manifest, find_files
from emoflow.fusion.manifest import (
    ManifestRow,
    check_labels,
    leave_speakers_out,
    read_manifest,
    speaker_split,
    write_manifest,
)


def touch(p):
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"RIFF")
    return p


def test_ravdess_layout(tmp_path):
    for actor in ("01", "02", "03"):
        touch(tmp_path / f"Actor_{actor}" / f"03-01-03-01-01-01-{actor}.wav")  # happy, speech
        touch(tmp_path / f"Actor_{actor}" / f"03-01-02-02-02-02-{actor}.wav")  # calm
        touch(tmp_path / f"Actor_{actor}" / f"03-02-05-01-01-01-{actor}.wav")  # song: skipped
    touch(tmp_path / "Actor_01" / "notes.wav")
    rows = build_manifest("ravdess", tmp_path)
    assert len(rows) == 6
    happy = next(r for r in rows if "-03-01-01-01-01" in r.audio)
    assert happy.labels == ("joy",) and happy.speaker == "ravdess_01"
    assert happy.text == "Kids are talking by the door."
    assert {r.labels[0] for r in rows} == {"joy", "neutral"}


def test_cremad_layout(tmp_path):
    touch(tmp_path / "AudioWAV" / "1001_DFA_ANG_XX.wav")
    touch(tmp_path / "AudioWAV" / "1002_IEO_HAP_HI.wav")
    touch(tmp_path / "AudioWAV" / "1003_TIE_SAD_LO.wav")
    rows = build_manifest("cremad", tmp_path)
    by = {r.speaker: r for r in rows}
    assert by["cremad_1001"].labels == ("anger",) and by["cremad_1001"].text == "Don't forget a jacket."
    assert by["cremad_1002"].labels == ("joy",) and by["cremad_1003"].labels == ("sadness",)


def test_iemocap_layout_four_classes_with_excited_as_happy(tmp_path):
    for n in (1, 5):
        s = tmp_path / f"Session{n}"
        dialog = f"Ses0{n}F_impro01"
        (s / "dialog" / "EmoEvaluation").mkdir(parents=True)
        (s / "dialog" / "transcriptions").mkdir(parents=True)
        (s / "dialog" / "EmoEvaluation" / f"{dialog}.txt").write_text(
            "% header\n\n"
            f"[6.2901 - 8.2357]\t{dialog}_F000\tneu\t[2.5000, 2.5000, 2.5000]\n"
            f"[10.0 - 11.5]\t{dialog}_M001\texc\t[3.0, 3.0, 3.0]\n"
            f"[12.0 - 13.0]\t{dialog}_F002\tfru\t[2.0, 2.0, 2.0]\n"
        )
        (s / "dialog" / "transcriptions" / f"{dialog}.txt").write_text(
            f"{dialog}_F000 [006.2901-008.2357]: Excuse me.\n{dialog}_M001 [010.0000-011.5000]: Yeah!\n"
        )
        for utt in ("F000", "M001", "F002"):
            touch(s / "sentences" / "wav" / dialog / f"{dialog}_{utt}.wav")
    rows = build_manifest("iemocap", tmp_path, split=False)
    assert len(rows) == 4  # frustration is not one of the 4 classes
    first = rows[0]
    assert first.labels == ("neutral",) and first.text == "Excuse me." and first.speaker == "Ses01F"
    assert rows[1].labels == ("joy",) and rows[1].speaker == "Ses01M"
    assert {r.split for r in rows if "Session5" in r.audio} == {"test"}


def test_meld_layout(tmp_path):
    header = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID"]
    for name, clips in (
        ("train_sent_emo.csv", "train_splits"),
        ("test_sent_emo.csv", "output_repeated_splits_test"),
    ):
        with open(tmp_path / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerow([1, "Oh my God!", "Rachel", "surprise", "positive", 0, 0])
            w.writerow([2, "Whatever.", "Ross", "neutral", "neutral", 0, 1])
        touch(tmp_path / clips / "dia0_utt0.mp4")
    rows = build_manifest("meld", tmp_path)
    assert len(rows) == 4 and {r.split for r in rows} == {"train", "test"}
    assert rows[0].labels == ("surprise",) and rows[0].audio.endswith("train_splits/dia0_utt0.mp4")


def test_unknown_layout_and_empty(tmp_path):
    with pytest.raises(InputError, match="unknown layout"):
        build_manifest("nope", tmp_path)
    with pytest.raises(InputError, match="no ravdess files"):
        build_manifest("ravdess", tmp_path)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_manifest_round_trip(tmp_path, suffix):
    rows = [
        ManifestRow(str(tmp_path / "a.wav"), ("joy",), 0.5, 2.0, "Hi, there.", "s1", "train"),
        ManifestRow(str(tmp_path / "b.wav"), ("joy", "surprise"), speaker="s2", split="test"),
    ]
    path = tmp_path / f"m{suffix}"
    write_manifest(rows, path)
    assert read_manifest(path) == rows


def test_manifest_relative_paths_and_label_forms(tmp_path):
    (tmp_path / "m.jsonl").write_text(
        json.dumps({"audio": "clips/a.wav", "label": "Joy"})
        + "\n"
        + json.dumps({"audio": "clips/b.wav", "labels": ["fear", "anger"]})
        + "\n"
    )
    rows = read_manifest(tmp_path / "m.jsonl")
    assert rows[0].audio == str(tmp_path / "clips" / "a.wav") and rows[0].labels == ("joy",)
    assert rows[1].labels == ("fear", "anger")
    (tmp_path / "bad.jsonl").write_text(json.dumps({"audio": "x.wav"}) + "\n")
    with pytest.raises(InputError, match="no 'label'"):
        read_manifest(tmp_path / "bad.jsonl")


def test_labels_outside_the_map_are_named():
    rows = [ManifestRow("a.wav", ("joy",)), ManifestRow("b.wav", ("calm",)), ManifestRow("c.wav", ("calm",))]
    with pytest.raises(InputError, match=r"'calm' \(2 rows\)"):
        check_labels(rows, ("joy", "neutral"))


def test_speaker_independent_splits():
    rows = [ManifestRow(f"{s}_{i}.wav", ("joy",), speaker=f"spk{s}") for s in range(20) for i in range(5)]
    split = speaker_split(rows, val=0.1, test=0.2)
    by_speaker = {}
    for r in split:
        by_speaker.setdefault(r.speaker, set()).add(r.split)
    assert all(len(v) == 1 for v in by_speaker.values())  # no speaker in two splits
    counts = {s: sum(1 for v in by_speaker.values() if v == {s}) for s in ("train", "val", "test")}
    assert counts == {"train": 14, "val": 2, "test": 4}
    assert speaker_split(rows, val=0.1, test=0.2) == split  # stable
    folds = leave_speakers_out(rows, 4)
    tested = [{r.speaker for r in f if r.split == "test"} for f in folds]
    assert set().union(*tested) == {f"spk{s}" for s in range(20)}
    assert all(not (a & b) for i, a in enumerate(tested) for b in tested[i + 1 :])


# ---- symlinked dataset folders (issue 10.11) ----------------------------------------------------
def ravdess_actors(store, actors=("01", "02", "03")):
    for actor in actors:
        touch(store / f"Actor_{actor}" / f"03-01-03-02-01-01-{actor}.wav")  # happy, strong intensity
        touch(store / f"Actor_{actor}" / f"03-01-04-01-02-02-{actor}.wav")  # sad, normal intensity


def test_ravdess_follows_symlinked_actor_folders_once_and_without_looping(tmp_path):
    store, root = tmp_path / "store", tmp_path / "ravdess"
    ravdess_actors(store)
    root.mkdir()
    for actor in ("01", "02", "03"):
        (root / f"Actor_{actor}").symlink_to(store / f"Actor_{actor}", target_is_directory=True)
    (root / "Actor_01" / "up").symlink_to(root, target_is_directory=True)  # a loop back to the root
    (root / "again").symlink_to(store / "Actor_02", target_is_directory=True)  # one folder, two links
    rows = build_manifest("ravdess", root, split=False)
    assert len(rows) == 6  # every file once
    assert len({Path(r.audio).resolve() for r in rows}) == 6
    assert all(r.audio.startswith(str(root)) for r in rows)  # paths as the user laid them out
    assert {r.speaker for r in rows} == {"ravdess_01", "ravdess_02", "ravdess_03"}


def test_cremad_and_meld_follow_symlinked_folders(tmp_path):
    store = tmp_path / "store"
    touch(store / "wavs" / "1001_DFA_ANG_XX.wav")
    (tmp_path / "cremad").mkdir()
    (tmp_path / "cremad" / "AudioWAV").symlink_to(store / "wavs", target_is_directory=True)
    assert [r.labels for r in build_manifest("cremad", tmp_path / "cremad", split=False)] == [("anger",)]

    (store / "meta").mkdir()
    with open(store / "meta" / "train_sent_emo.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID"])
        w.writerow([1, "Oh my God!", "Rachel", "surprise", "positive", 0, 0])
    (tmp_path / "meld").mkdir()
    (tmp_path / "meld" / "meta").symlink_to(store / "meta", target_is_directory=True)
    rows = build_manifest("meld", tmp_path / "meld", split=False)
    assert [(r.labels, r.text) for r in rows] == [(("surprise",), "Oh my God!")]


def test_find_files_lists_each_real_folder_once(tmp_path):
    touch(tmp_path / "a" / "x.WAV")
    touch(tmp_path / "a" / "b" / "y.wav")
    (tmp_path / "a" / "b" / "loop").symlink_to(tmp_path / "a", target_is_directory=True)
    (tmp_path / "c").symlink_to(tmp_path / "a" / "b", target_is_directory=True)
    found = find_files(tmp_path, suffix=".wav")
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a/b/y.wav", "a/x.WAV"]


# ---- manifest round trips (issue 10.5) ----------------------------------------------------------
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_ravdess_intensity_survives_the_manifest(tmp_path, suffix):
    ravdess_actors(tmp_path / "data", actors=("04",))
    rows = build_manifest("ravdess", tmp_path / "data", split=False)
    assert sorted(r.extra["intensity"] for r in rows) == ["01", "02"]
    write_manifest(rows, tmp_path / f"m{suffix}")
    back = read_manifest(tmp_path / f"m{suffix}")
    assert back == rows and [r.extra for r in back] == [r.extra for r in rows]


label_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=8).filter(
    lambda s: s == s.strip().lower() and s.strip()
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.text(max_size=6)
    | st.floats(allow_nan=False, allow_infinity=False)
)
times_s = st.none() | st.floats(0, 1e6, allow_nan=False, allow_infinity=False)
manifest_rows = st.builds(
    ManifestRow,
    audio=st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=10)
    .map(lambda name: "/data/" + name.replace("/", "_").strip())
    .filter(lambda p: p == str(Path(p)) and len(p) > len("/data/")),
    labels=st.lists(label_text, min_size=1, max_size=3).map(tuple),
    start=times_s,
    end=times_s,
    text=st.none() | st.text(max_size=30),
    speaker=st.none() | st.text(max_size=8),
    split=st.none() | st.sampled_from(["train", "val", "test"]),
    extra=st.dictionaries(st.text(min_size=1, max_size=6), json_scalars, max_size=3),
)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_manifest_round_trip_property(tmp_path_factory, suffix):
    path = tmp_path_factory.mktemp("manifest") / f"m{suffix}"

    @settings(max_examples=60, deadline=None)
    @given(st.lists(manifest_rows, min_size=1, max_size=4))
    def round_trip(rows):
        write_manifest(rows, path)
        back = read_manifest(path)
        assert back == rows
        assert [r.extra for r in back] == [r.extra for r in rows]

    round_trip()


@given(manifest_rows)
def test_manifest_row_dict_round_trip(row):
    assert ManifestRow.from_dict(json.loads(json.dumps(row.to_dict()))) == row


@pytest.mark.parametrize("bad", ["nan", "inf", "-1", "1e400"])
def test_manifest_rejects_non_finite_or_negative_times(tmp_path, bad):
    (tmp_path / "m.csv").write_text(f"audio,label,start,end\na.wav,joy,{bad},2\n")
    with pytest.raises(InputError, match=r"m\.csv:1: times must be finite"):
        read_manifest(tmp_path / "m.csv")


def test_datasets_module_keeps_its_public_names():
    """``emoflow.fusion.datasets`` is the public face of the manifest and adapter modules."""
    from emoflow.fusion import adapters, manifest

    for name in datasets.__all__:
        assert getattr(datasets, name) is getattr(manifest, name, None) or getattr(datasets, name) is getattr(
            adapters, name, None
        ), name
    assert {"ManifestRow", "read_manifest", "build_manifest", "find_files", "CANDIDATES"} <= set(
        datasets.__all__
    )
