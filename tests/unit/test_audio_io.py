import io

import numpy as np
import pytest
import soundfile as sf

from emoflow.audio.io import TARGET_RATE, load_audio
from emoflow.errors import AudioError
from tests.helpers import lying_flac, need_shared, tone


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize(
    ("fmt", "subtype"),
    [
        ("WAV", "PCM_16"),
        ("WAV", "PCM_24"),
        ("WAV", "PCM_32"),
        ("WAV", "FLOAT"),
        ("FLAC", "PCM_24"),
        ("OGG", "VORBIS"),
    ],
)
def test_formats_rates_and_depths_load_to_16k_mono(tmp_path, rate, fmt, subtype):
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, tone(1.5, rate, channels=2), rate, format=fmt, subtype=subtype)
    a = load_audio(path)
    assert a.sample_rate == TARGET_RATE and a.samples.dtype == np.float32 and a.samples.ndim == 1
    assert a.source_rate == rate and a.source_channels == 2
    assert a.duration == pytest.approx(1.5, abs=2 / TARGET_RATE)
    # a 440 Hz tone stays a 440 Hz tone (resampling kept the pitch and the level)
    spec = np.abs(np.fft.rfft(a.samples))
    assert np.fft.rfftfreq(len(a.samples), 1 / TARGET_RATE)[spec.argmax()] == pytest.approx(440, abs=2)
    assert np.abs(a.samples).max() == pytest.approx(0.3, abs=0.03)


def test_mp3(tmp_path):
    path = tmp_path / "x.mp3"
    try:
        sf.write(path, tone(2.0, 44100), 44100, format="MP3")
    except (sf.LibsndfileError, ValueError, TypeError):
        pytest.skip("this libsndfile cannot write MP3")
    a = load_audio(path)
    assert a.duration == pytest.approx(2.0, abs=0.1)


def test_m4a_through_pyav(tmp_path):
    av = pytest.importorskip("av")
    path = tmp_path / "x.m4a"
    x = tone(2.0, 44100)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=44100)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(x[None, :], format="fltp", layout="mono")
        frame.sample_rate = 44100
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    a = load_audio(path)
    assert a.duration == pytest.approx(2.0, abs=0.1)
    assert a.source_rate == 44100


def test_file_object_and_array_inputs():
    buf = io.BytesIO()
    sf.write(buf, tone(1.0, 22050), 22050, format="WAV")
    buf.seek(0)
    assert load_audio(buf).duration == pytest.approx(1.0, abs=1e-3)
    assert load_audio((tone(1.0, 8000, channels=2), 8000)).duration == pytest.approx(1.0, abs=1e-3)
    # (channels, frames) int16 arrays are accepted too
    ints = (tone(1.0, 16000, channels=2).T * 32767).astype(np.int16)
    a = load_audio((ints, 16000))
    assert a.duration == pytest.approx(1.0) and np.abs(a.samples).max() == pytest.approx(0.3, abs=0.01)


def test_long_file_streams_into_one_buffer(tmp_path):
    path = tmp_path / "long.flac"
    sf.write(path, tone(60.0, 44100), 44100, subtype="PCM_16")
    a = load_audio(path)
    assert a.duration == pytest.approx(60.0, abs=1e-3)
    assert a.samples.base is None or a.samples.base.size <= a.samples.size + 1024


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_text("this is not audio at all, just text " * 20), "not"),
        (lambda p: p.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + bytes(40)), ""),
        (lambda p: p.write_bytes(b""), "empty"),
    ],
    ids=["missing", "text", "corrupt-header", "empty-file"],
)
def test_bad_files_raise_audio_error(tmp_path, make, message):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError) as e:
        load_audio(path)
    assert message in str(e.value)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_zero_samples_and_nan(tmp_path):
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="zero samples"):
        load_audio(empty)
    nan = tmp_path / "nan.wav"
    x = tone(1.0, 16000)
    x[100] = np.nan
    sf.write(nan, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        load_audio(nan)
    with pytest.raises(AudioError, match="NaN"):
        load_audio((np.array([0.0, np.inf], np.float32), 16000))
    with pytest.raises(AudioError):
        load_audio((np.zeros((2, 2, 2)), 16000))
    with pytest.raises(AudioError):
        load_audio(tmp_path)


def test_jfk_loads_to_16k_mono_with_the_right_duration():
    path = need_shared("audio", "jfk.flac")
    a = load_audio(path)
    info = sf.info(str(path))
    assert (info.samplerate, info.channels) == (44100, 2)
    assert a.source_rate == 44100 and a.source_channels == 2
    assert a.duration == pytest.approx(info.frames / 44100, abs=1 / TARGET_RATE)
    assert a.duration == pytest.approx(11.0, abs=0.01)


def test_report_audio_of_a_long_recording_encodes(tmp_path):
    """libsndfile's Vorbis encoder crashes (stack overflow) on one large write; the report writes
    in blocks. Run in a subprocess so a regression fails this test instead of killing pytest."""
    import subprocess
    import sys

    code = (
        "import numpy as np; from emoflow.viz.report import _audio_data_uri; "
        "x = (0.1 * np.random.default_rng(0).standard_normal(16000 * 600)).astype(np.float32); "
        "print(len(_audio_data_uri(x)))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-500:]
    assert int(r.stdout) > 1_000_000


# ---- limits: decoded duration (issue 11.3) and headers that lie (issue 11.5) -------------------


def test_probe_duration_reads_headers_without_decoding(tmp_path, monkeypatch):
    import emoflow.audio.io as aio

    monkeypatch.setattr(aio, "_resample_blocks", lambda *a, **k: pytest.fail("decoded"))
    wav = tmp_path / "a.wav"
    sf.write(wav, tone(2.5, 22050, 2), 22050)
    ogg = tmp_path / "b.ogg"
    sf.write(ogg, tone(1.5, 16000), 16000, format="OGG", subtype="VORBIS")
    assert aio.probe_duration(wav) == pytest.approx(2.5, abs=1e-4)
    assert aio.probe_duration(str(ogg)) == pytest.approx(1.5, abs=0.01)
    with open(wav, "rb") as f:
        assert aio.probe_duration(f) == pytest.approx(2.5, abs=1e-4) and f.tell() == 0  # rewound
    assert aio.probe_duration((np.zeros(8000, np.float32), 16000)) == 0.5
    assert aio.probe_duration(aio.Audio(np.zeros(4000, np.float32))) == 0.25
    text = tmp_path / "c.wav"
    text.write_text("not audio " * 30)
    assert aio.probe_duration(text) is None and aio.probe_duration(tmp_path / "missing.wav") is None


def test_max_duration_from_the_header_before_decoding(tmp_path, monkeypatch):
    import emoflow.audio.io as aio

    wav = tmp_path / "long.wav"
    sf.write(wav, tone(3.0, 8000), 8000)
    monkeypatch.setattr(aio, "_resample_blocks", lambda *a, **k: pytest.fail("decoded before refusing"))
    with pytest.raises(AudioError, match=r"long\.wav: the audio is 3\.0 s long, over the limit of 2\.5 s"):
        aio.load_audio(wav, max_duration=2.5)
    with pytest.raises(AudioError, match="over the limit of 1 s"):
        aio.load_audio((tone(1.5, 16000), 16000), max_duration=1)
    with pytest.raises(AudioError, match="over the limit"):
        aio.load_audio(aio.Audio(np.zeros(16000 * 2, np.float32)), max_duration=1.5)


def test_max_duration_while_decoding_when_the_header_does_not_tell(monkeypatch):
    import emoflow.audio.io as aio

    seen = []

    def blocks():  # a stream without a length: 7 blocks of 0.5 s at 22.05 kHz, stereo
        for _ in range(7):
            seen.append(1)
            yield np.zeros((11025, 2), np.float32)

    with pytest.raises(
        AudioError, match=r"stream\.ogg: the audio is longer than that, over the limit of 2 s"
    ):
        aio._resample_blocks(blocks(), 22050, None, "stream.ogg", max_duration=2.0)
    assert len(seen) == 5  # stopped at the first block past the limit, not at the end


def test_max_duration_allows_what_fits_and_rejects_bad_limits(tmp_path):
    from emoflow.errors import ConfigError

    wav = tmp_path / "a.wav"
    sf.write(wav, tone(2.0, 11025), 11025)
    assert load_audio(wav, max_duration=2.0).duration == pytest.approx(2.0, abs=1e-3)
    for bad in (0, -1.0, float("nan"), float("inf"), "10", True):
        with pytest.raises(ConfigError, match="max duration"):
            load_audio(wav, max_duration=bad)  # type: ignore[arg-type]


def test_a_header_that_lies_about_its_length_is_not_trusted(tmp_path, monkeypatch):
    """Issue 11.5: a 10 KB FLAC claiming 2^36 samples made load_audio preallocate 256 GiB."""
    import emoflow.audio.io as aio

    path = lying_flac(tmp_path / "lie.flac")
    assert sf.info(str(path)).frames == (1 << 36) - 1 and path.stat().st_size < 20_000
    capacities = []
    real_buffer = aio.SampleBuffer

    class Spy(real_buffer):  # type: ignore[misc,valid-type]
        def __init__(self, capacity: int) -> None:
            capacities.append(capacity)
            super().__init__(capacity)

    monkeypatch.setattr(aio, "SampleBuffer", Spy)
    a = aio.load_audio(path)
    assert a.duration == pytest.approx(2.0, abs=1e-3)
    assert capacities and max(capacities) <= aio.PREALLOC_MAX_SAMPLES  # not 2^36 samples
    assert a.samples.base is None or a.samples.base.size <= a.samples.size + 1024  # trimmed
    with pytest.raises(AudioError, match=r"lie\.flac: the audio is 4294967\.3 s long, over the limit"):
        aio.load_audio(path, max_duration=3600)


def test_buffer_grows_past_the_preallocation_and_trims(monkeypatch):
    import emoflow.audio.io as aio

    monkeypatch.setattr(aio, "PREALLOC_MAX_SAMPLES", 3000)
    x = tone(1.3, 16000)
    blocks = (x[i : i + 1000, None] for i in range(0, len(x), 1000))
    out = aio._resample_blocks(blocks, 16000, 10**12, "x")
    np.testing.assert_array_equal(out, x)
    assert out.base is None or out.base.size <= out.size + 1024
