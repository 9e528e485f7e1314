"""examples/training/train_vae.py and examples/training/train_vocoder.py: losses, and saved components that plug into the pipeline."""

import math

import numpy as np
import pytest
import soundfile
import torch
from diffusers import AutoencoderKL
from helpers import load_example
from transformers import SpeechT5HifiGan

from diffusers_impact.audio import HOP_LENGTH, mel_spectrogram, waveform_to_latents


@pytest.fixture
def clips(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    time = np.arange(16000) / 16000
    for index, frequency in enumerate((220.0, 440.0, 880.0)):
        soundfile.write(folder / f"{index}.wav", 0.3 * np.sin(2 * np.pi * frequency * time), 16000)
    return folder


def test_multi_resolution_stft_loss_known_answers():
    stft_loss = load_example("train_vocoder").multi_resolution_stft_loss
    target = torch.randn(2, 4000, generator=torch.Generator().manual_seed(0))
    assert stft_loss(target, target).item() == pytest.approx(0.0, abs=1e-6)
    # Half the amplitude: spectral convergence ‖X/2 − X‖ / ‖X‖ = 0.5 and |log|X| − log|X/2|| = log 2 at every bin.
    assert stft_loss(0.5 * target, target).item() == pytest.approx(0.5 + math.log(2.0), rel=1e-4)


def test_vae_detail_loss_known_answers():
    """L1 on neighbouring-bin and neighbouring-frame differences: 0 for an offset copy, which plain L1 would
    penalise, and exactly the lost contrast for a harmonic comb flattened to its mean."""
    detail_loss = load_example("train_vae").detail_loss
    mel = torch.randn(2, 1, 16, 8, generator=torch.Generator().manual_seed(0))
    assert detail_loss(mel + 3.0, mel).item() == pytest.approx(0.0, abs=1e-6)
    comb = torch.zeros(1, 1, 4, 8)
    comb[..., ::2] = 2.0  # bins alternate 2, 0: every neighbouring-bin difference is ±2, frames are equal
    assert detail_loss(torch.full_like(comb, 1.0), comb).item() == pytest.approx(2.0)


def test_vae_discriminator_scores_patches_and_its_hinge_loss_known_answers():
    train_vae = load_example("train_vae")
    scores = train_vae.patch_discriminator()(torch.zeros(2, 1, 128, 64))
    assert scores.shape == (2, 1, 16, 8)  # one score per 8 × 8 patch
    hinge = train_vae.discriminator_hinge_loss
    assert hinge(torch.full((4,), 2.0), torch.full((4,), -2.0)).item() == 0.0  # both beyond the margins
    assert hinge(torch.zeros(4), torch.zeros(4)).item() == pytest.approx(2.0)
    assert hinge(torch.tensor([0.5, 1.5]), torch.tensor([-0.5, -3.0])).item() == pytest.approx(0.25 + 0.25)


@pytest.mark.slow
def test_train_vae_saves_a_unit_variance_autoencoder(clips, tmp_path):
    output = tmp_path / "vae"
    load_example("train_vae").main(
        [
            "--train_data",
            str(clips),
            "--output_dir",
            str(output),
            "--block_out_channels",
            "8",
            "8",
            "--norm_num_groups",
            "4",
            "--segment_frames",
            "64",
            "--crop_frames",
            "32",
            "--train_batch_size",
            "2",
            "--max_train_steps",
            "2",
            "--detail_weight",
            "0.5",
            "--adversarial_weight",
            "0.1",
            "--adversarial_start",
            "1",
        ]
    )
    vae = AutoencoderKL.from_pretrained(output)
    assert vae.config.latent_channels == 8 and vae.config.in_channels == 1
    waveforms = torch.from_numpy(np.stack([soundfile.read(clips / f"{i}.wav")[0] for i in range(3)])).float()
    with torch.no_grad():
        latents = waveform_to_latents(vae, 0.5 * waveforms / waveforms.abs().amax(1, keepdim=True), num_frames=64)
    assert latents.shape == (3, 8, 32, 32)
    assert 0.5 < latents.std().item() < 2.0  # scaling_factor = 1 / std of the training latents


def test_train_vae_rejects_a_negative_adversarial_setting(clips, tmp_path, capsys):
    for flag in ("--adversarial_weight", "--adversarial_start"):
        with pytest.raises(SystemExit):
            load_example("train_vae").parse_args(
                ["--train_data", str(clips), "--output_dir", str(tmp_path), "--max_train_steps", "1", flag, "-1"]
            )
        assert "--adversarial_weight and --adversarial_start must be ≥ 0" in capsys.readouterr().err


def test_train_vae_rejects_crops_not_divisible_by_the_downsampling(clips, tmp_path):
    with pytest.raises(SystemExit):
        load_example("train_vae").parse_args(
            [
                "--train_data",
                str(clips),
                "--output_dir",
                str(tmp_path),
                "--crop_frames",
                "30",
                "--max_train_steps",
                "1",
            ]
        )


@pytest.mark.slow
def test_train_vocoder_saves_a_hop_aligned_hifigan(clips, tmp_path):
    output = tmp_path / "vocoder"
    load_example("train_vocoder").main(
        [
            "--train_data",
            str(clips),
            "--output_dir",
            str(output),
            "--upsample_initial_channel",
            "16",
            "--resblock_kernel_sizes",
            "3",
            "--segment_frames",
            "64",
            "--crop_frames",
            "16",
            "--train_batch_size",
            "2",
            "--max_train_steps",
            "2",
        ]
    )
    vocoder = SpeechT5HifiGan.from_pretrained(output)
    assert vocoder.config.sampling_rate == 16000 and vocoder.config.model_in_dim == 64
    mel = mel_spectrogram(torch.randn(1, 3200), num_frames=20)[:, 0]
    with torch.no_grad():
        assert vocoder(mel).shape[-1] == 20 * HOP_LENGTH  # frame t ↔ samples [t·160, (t+1)·160)


def test_train_vocoder_rejects_rates_that_do_not_multiply_to_the_hop(clips, tmp_path):
    with pytest.raises(SystemExit):
        load_example("train_vocoder").parse_args(
            [
                "--train_data",
                str(clips),
                "--output_dir",
                str(tmp_path),
                "--upsample_rates",
                "4",
                "4",
                "4",
                "--max_train_steps",
                "1",
            ]
        )
