import json

from tests.helpers import need_shared, run_cli


def write(tmp_path, data, name="t.json"):
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return p


TRANSCRIPT = {
    "text": " Hello there. How are you?",
    "chunks": [
        {"text": " Hello", "timestamp": [0.5, 0.8]},
        {"text": " there.", "timestamp": [0.8, 1.4]},
        {"text": " How", "timestamp": [1.9, 2.1]},
        {"text": " are", "timestamp": [2.1, 2.3]},
        {"text": " you?", "timestamp": [2.3, None]},
    ],
}


def test_sentences_json_csv_srt(tmp_path):
    p = write(tmp_path, TRANSCRIPT)
    r = run_cli("sentences", str(p))
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["schema_version"] and [s["text"] for s in d["sentences"]] == ["Hello there.", "How are you?"]
    s0 = d["sentences"][0]
    assert (s0["start"], s0["end"]) == (0.5, 1.4) and s0["words"][0] == {
        "text": "Hello",
        "start": 0.5,
        "end": 0.8,
    }
    assert "repaired transcript" in r.stderr  # the None end was interpolated and said so
    out = tmp_path / "s.srt"
    r = run_cli("sentences", str(p), "--format", "srt", "--out", str(out))
    assert r.returncode == 0 and out.read_text().startswith("1\n00:00:00,500 --> 00:00:01,400\nHello there.")
    r = run_cli("sentences", str(p), "--format", "csv")
    assert r.stdout.splitlines()[0] == "index,start,end,text"


def test_errors_are_one_line_with_exit_codes(tmp_path):
    r = run_cli("sentences", str(tmp_path / "missing.json"))
    assert r.returncode == 3 and r.stderr.startswith("error: ") and "no such file" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    r = run_cli("sentences", str(bad))
    assert r.returncode == 3 and "invalid JSON" in r.stderr
    r = run_cli("sentences", str(bad), "--no-such-flag")
    assert r.returncode == 2
    r = run_cli("--debug", "sentences", str(bad))
    assert r.returncode == 3 and "Traceback" in r.stderr


def test_bad_audio_gives_exit_3_and_no_output_file(tmp_path):
    p = write(tmp_path, TRANSCRIPT)
    notaudio = tmp_path / "x.wav"
    notaudio.write_text("hello")
    out = tmp_path / "out.json"
    r = run_cli("sentences", str(p), "--audio", str(notaudio), "--out", str(out))
    assert r.returncode == 3 and r.stderr.startswith("error: ") and not out.exists()
    assert list(tmp_path.iterdir()) == sorted([p, notaudio]) or set(tmp_path.iterdir()) == {p, notaudio}


def test_transcript_of_another_recording_is_rejected(tmp_path):
    audio = need_shared("audio", "speech", "stereo_44k.wav")
    long = {"chunks": [{"text": " a", "timestamp": [0, 1]}, {"text": " b.", "timestamp": [30, 31]}]}
    r = run_cli("sentences", str(write(tmp_path, long)), "--audio", str(audio))
    assert r.returncode == 3 and "runs to 30.00 s" in r.stderr
