#!/usr/bin/env python
# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""Make the recordings of the LoRA demonstration's new sound, a robot voice, with the eSpeak NG speech synthesiser.

    apt-get install -y espeak-ng && python examples/default_model/lora/make_robot_voice.py

Writes `assets/robot_voice/robot_voice_{0..5}.wav` (16 kHz, 16-bit, each under 5.12 s, the default model's clip length):
six phrases, each in another eSpeak voice and speed. The committed files are this script's output (eSpeak NG 1.51);
the tests and the recipe use the committed files and do not need eSpeak.
"""

import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile

from diffusers_impact.audio import SAMPLING_RATE, resample


FOLDER = Path(__file__).resolve().parents[3] / "assets" / "robot_voice"
# (voice, words per minute, text): eSpeak's English voices with its male and female variants.
TAKES = [
    ("en-us", 150, "hello, how are you today"),
    ("en+m3", 165, "please open the door"),
    ("en-us+f2", 140, "one, two, three, four, five"),
    ("en+f4", 155, "good morning everyone"),
    ("en-us+m7", 170, "welcome to the station"),
    ("en+m1", 145, "the weather is nice"),
]
MAX_SAMPLES = 81920  # 5.12 s


def main() -> None:
    FOLDER.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as temporary:
        for index, (voice, speed, text) in enumerate(TAKES):
            path = Path(temporary) / f"{index}.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True)
            samples, rate = soundfile.read(path, dtype="float64")
            samples = resample(samples, rate, SAMPLING_RATE)[:MAX_SAMPLES]
            samples = samples / np.abs(samples).max() * 0.5
            soundfile.write(FOLDER / f"robot_voice_{index}.wav", samples, SAMPLING_RATE, subtype="PCM_16")
            print(f"robot_voice_{index}.wav: {voice}, {speed} wpm, {len(samples) / SAMPLING_RATE:.2f} s: {text!r}")


if __name__ == "__main__":
    main()
