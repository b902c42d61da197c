#!/usr/bin/env bash
# Rebuild examples/sample.flac (espeak-ng speech, ours) and its transcript made by Whisper tiny.en.
# usage: bash examples/make_sample.sh [WHISPER_DIR]
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
espeak-ng -v en-us -s 150 -m -w "$tmp/raw.wav" '<speak>We finally won the championship, and I am so happy! <break time="900ms"/> But then the coach told us he was leaving, and the whole team felt terribly sad. <break time="900ms"/> What are we supposed to do now?</speak>'
python - "$tmp/raw.wav" "${1:-../../shared/models/whisper-tiny.en}" <<'PY'
import json, sys
import numpy as np, soundfile as sf, soxr, torch
from transformers import pipeline
x, sr = sf.read(sys.argv[1], dtype="float32")
x = np.concatenate([np.zeros(8000, np.float32), soxr.resample(x, sr, 16000), np.zeros(8000, np.float32)])
sf.write("sample.flac", x, 16000, subtype="PCM_16")
asr = pipeline("automatic-speech-recognition", model=sys.argv[2], device="cpu", dtype=torch.float32)
out = asr({"raw": x, "sampling_rate": 16000}, return_timestamps="word")
out["chunks"] = [{"text": c["text"], "timestamp": list(c["timestamp"])} for c in out["chunks"]]
json.dump(out, open("sample.transcript.json", "w"), indent=1)
print(out["text"])
PY
rm -rf "$tmp"
