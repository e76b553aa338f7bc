#!/usr/bin/env python3
"""librosa's MFCC time per one-second clip, to compare with `rnnlab bench mfcc`
(run both one after the other on the same machine).

    .venv/bin/python scripts/librosa_bench.py [--iters 500] [--root data/speech_commands]

Prints the per-clip time of `librosa.feature.mfcc(y, sr=16000, n_mfcc=20, n_fft=2048,
hop_length=512)` on a 1 s clip (wall and this thread's CPU time, the fair figure on a
machine shared with other jobs), and of `librosa.load` + MFCC per file (first 500 files of
the dataset, when present), both on one thread.
"""
import argparse
import glob
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import librosa  # noqa: E402
import numpy as np  # noqa: E402


def mfcc(y):
    return librosa.feature.mfcc(y=y, sr=16000, n_mfcc=20, n_fft=2048, hop_length=512)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=500)
    ap.add_argument("--root", default="data/speech_commands")
    args = ap.parse_args()
    t = np.arange(16000) / 16000
    rng = np.random.default_rng(0)
    y = (0.5 * np.sin(2 * np.pi * (200 * t + 1500 * t * t)) + 0.05 * rng.standard_normal(16000)).astype(np.float32)
    for _ in range(20):
        mfcc(y)
    start, cpu = time.perf_counter(), time.thread_time()
    for _ in range(args.iters):
        mfcc(y)
    per = (time.perf_counter() - start) / args.iters
    per_cpu = (time.thread_time() - cpu) / args.iters
    print(
        f"librosa {librosa.__version__} mfcc one clip: {per * 1e3:.3f} ms/clip wall, "
        f"{per_cpu * 1e3:.3f} ms of CPU time ({args.iters} clips)"
    )
    files = sorted(glob.glob(os.path.join(args.root, "data_speech_commands_v0.02", "*", "*.wav")))[:500]
    if files:
        start = time.perf_counter()
        for f in files:
            x, _ = librosa.load(f, sr=16000)
            x = np.pad(x, (0, max(0, 16000 - len(x))))[:16000]
            mfcc(x)
        per = (time.perf_counter() - start) / len(files)
        print(f"librosa load + mfcc: {per * 1e3:.3f} ms/file ({len(files)} files)")


if __name__ == "__main__":
    main()
