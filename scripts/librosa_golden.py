#!/usr/bin/env python3
"""Golden MFCCs from librosa for crates/data/tests/mfcc_golden.rs.

Makes deterministic 16 kHz 16-bit WAVs (tones, a chirp, noise, espeak-ng speech,
silence, a clip at full scale, a short and a long clip) under
crates/data/tests/fixtures/wav/, then writes librosa's features of each to
crates/data/tests/fixtures/mfcc_golden.json exactly as the coursework notebook does:

    y, _ = librosa.load(path, sr=16000)
    y = pad or cut to 16000 samples
    librosa.feature.mfcc(y=y * scale, sr=16000, n_mfcc=20, n_fft=2048, hop_length=512).T

Run: .venv/bin/pip install librosa && .venv/bin/python scripts/librosa_golden.py
"""
import json
import os
import subprocess
import tempfile

import librosa
import numpy as np
import soundfile as sf

SR = 16000
ROOT = os.path.join(os.path.dirname(__file__), "..", "crates", "data", "tests", "fixtures")
WAV_DIR = os.path.join(ROOT, "wav")


def to_int16(x):
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


def espeak(word, voice):
    with tempfile.TemporaryDirectory() as d:
        raw = os.path.join(d, "w.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-w", raw, word], check=True)
        y, _ = librosa.load(raw, sr=SR)  # espeak-ng writes 22.05 kHz
    return 0.8 * y / np.max(np.abs(y))


def clips():
    t = np.arange(SR) / SR
    rng = np.random.default_rng(1234)
    yield "tone_440", 0.5 * np.sin(2 * np.pi * 440 * t)
    yield "tone_3k_quiet", 0.01 * np.sin(2 * np.pi * 3000 * t)
    yield "chirp", 0.7 * np.sin(2 * np.pi * (100 * t + (7000 - 100) / 2 * t**2))
    yield "noise", np.clip(0.2 * rng.standard_normal(SR), -1, 1)
    yield "silence", np.zeros(SR)
    yield "full_scale", np.clip(1.3 * np.sin(2 * np.pi * 220 * t), -1, 1)
    yield "speech_three", espeak("three", "en-us")
    yield "speech_one_short", espeak("one", "en-gb+f3")  # shorter than 1 s: padded
    yield "noise_long", 0.1 * rng.standard_normal(int(1.4 * SR))  # longer: cut
    yield "tone_burst", 0.3 * np.sin(2 * np.pi * 1000 * t) * (t < 0.5)


def main():
    os.makedirs(WAV_DIR, exist_ok=True)
    out = {"librosa": librosa.__version__, "numpy": np.__version__, "clips": []}
    for name, y in clips():
        path = os.path.join(WAV_DIR, name + ".wav")
        sf.write(path, to_int16(y), SR, subtype="PCM_16")
        for scale in (1.0, 32768.0) if name in ("speech_three", "noise") else (1.0,):
            x, _ = librosa.load(path, sr=SR)
            x = np.pad(x, (0, max(0, SR - len(x))))[:SR]
            m = librosa.feature.mfcc(y=x * np.float32(scale), sr=SR, n_mfcc=20, n_fft=2048, hop_length=512).T
            out["clips"].append(
                {"name": name, "wav": f"wav/{name}.wav", "scale": scale, "mfcc": m.astype(float).round(6).tolist()}
            )
            print(f"{name:18s} scale {scale:7.0f}: {m.shape}, range {m.min():.2f} .. {m.max():.2f}")
    with open(os.path.join(ROOT, "mfcc_golden.json"), "w") as f:
        json.dump(out, f, separators=(",", ":"))


if __name__ == "__main__":
    main()
