#!/usr/bin/env python3
"""Golden silence-trimming intervals from librosa for crates/data/tests/trim_golden.rs.

Makes deterministic 16 kHz 16-bit WAVs (speech-like bursts between stretches of
silence or a low noise floor, a clip with no silence, an all-silent clip, a
clip shorter than one frame) under crates/data/tests/fixtures/trim/, then
writes librosa's `effects.trim` interval of each, with its default rule
(top_db=60 against the loudest frame's RMS, frames of 2048, hop 512) and a
stricter one (top_db=30), to crates/data/tests/fixtures/trim_golden.json:

    y, _ = librosa.load(path, sr=16000)
    _, (start, end) = librosa.effects.trim(y, top_db=top_db)

Run: .venv/bin/pip install librosa && .venv/bin/python scripts/trim_golden.py
"""
import json
import os

import librosa
import numpy as np
import soundfile as sf

SR = 16000
ROOT = os.path.join(os.path.dirname(__file__), "..", "crates", "data", "tests", "fixtures")
WAV_DIR = os.path.join(ROOT, "trim")


def to_int16(x):
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


def clips():
    rng = np.random.default_rng(4321)
    t = np.arange(SR) / SR
    burst = 0.5 * np.sin(2 * np.pi * 300 * t) * np.sin(np.pi * np.clip((t - 0.3) / 0.4, 0, 1))
    yield "burst_in_silence", burst
    yield "burst_on_noise_floor", burst + 1e-4 * rng.standard_normal(SR)
    yield "burst_on_loud_floor", burst + 3e-3 * rng.standard_normal(SR)
    fade = np.exp(-6 * t) * np.sin(2 * np.pi * 500 * t)
    yield "decay", 0.8 * np.concatenate([np.zeros(SR // 4), fade])
    yield "noise_throughout", 0.2 * rng.standard_normal(SR)
    yield "silence", np.zeros(SR)
    yield "short_click", np.concatenate([np.zeros(300), 0.5 * np.ones(20), np.zeros(300)])
    two = np.zeros(int(1.5 * SR))
    two[3000:6000] = 0.3 * rng.standard_normal(3000)
    two[15000:17000] = 0.05 * rng.standard_normal(2000)
    yield "two_words_long", two


def main():
    os.makedirs(WAV_DIR, exist_ok=True)
    out = {"librosa": librosa.__version__, "numpy": np.__version__, "clips": []}
    for name, y in clips():
        path = os.path.join(WAV_DIR, name + ".wav")
        sf.write(path, to_int16(y), SR, subtype="PCM_16")
        y, _ = librosa.load(path, sr=SR)
        entry = {"name": name, "samples": int(len(y)), "intervals": []}
        for top_db in (60, 30):
            _, (start, end) = librosa.effects.trim(y, top_db=top_db)
            entry["intervals"].append({"top_db": top_db, "start": int(start), "end": int(end)})
        out["clips"].append(entry)
        print(name, entry["intervals"])
    with open(os.path.join(ROOT, "trim_golden.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
