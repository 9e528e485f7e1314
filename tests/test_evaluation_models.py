"""The evaluation networks (PANNs Cnn14, VGGish, CLAP), their front-ends, and examples/evaluation/evaluate.py (CPU, offline)."""

import hashlib
import io
import json
import pickle
import shutil
import subprocess
import sys
import urllib.error
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile
import torch
import torch.nn.functional as F
from helpers import Payload, example, load_example, run_on_two_cpu_processes
from transformers import (
    ClapAudioConfig,
    ClapConfig,
    ClapFeatureExtractor,
    ClapModel,
    ClapProcessor,
    ClapTextConfig,
)

from diffusers_impact.evaluation import (
    AudioEvaluator,
    ClapScorer,
    Cnn14,
    PannsLogMel,
    PannsSpectrogram,
    VGGish,
    inception_score,
    kl_divergence,
    list_audio_files,
    load_checkpoint,
    load_evaluation_audio,
    vggish_examples,
    vggish_log_mel,
    vggish_mel_filterbank,
)
from diffusers_impact.evaluation import evaluator as evaluator_module
from diffusers_impact.evaluation.checkpoints import PANNS_CNN14_16K_SHA256, VGGISH_SHA256, VGGISH_URL
from diffusers_impact.testing_utils import tiny_clap_tokenizer, tiny_impact_pipeline


SAMPLING_RATE = 16000


def sine(frequency: float, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    time = np.arange(int(SAMPLING_RATE * seconds)) / SAMPLING_RATE
    return (amplitude * np.sin(2 * np.pi * frequency * time)).astype(np.float32)


def tiny_clap_model(seed: int = 0) -> tuple[ClapModel, ClapProcessor]:
    """A tiny random fused CLAP (HTSAT + RoBERTa) with a tokenizer built in code: nothing is downloaded."""
    torch.manual_seed(seed)
    tokenizer = tiny_clap_tokenizer()
    text_config = ClapTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_attention_heads=2,
        num_hidden_layers=1,
        max_position_embeddings=80,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    audio_config = ClapAudioConfig(
        depths=[1, 1],
        num_attention_heads=[1, 1],
        patch_embeds_hidden_size=8,
        hidden_size=16,
        window_size=4,
        enable_fusion=True,
    )
    config = ClapConfig(text_config=text_config.to_dict(), audio_config=audio_config.to_dict(), projection_dim=8)
    return ClapModel(config).eval(), ClapProcessor(feature_extractor=ClapFeatureExtractor(), tokenizer=tokenizer)


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict:
    """Randomly initialised networks saved in the layout of the released files (and their SHA-256), a tiny CLAP."""
    root = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    # audioset_tagging_cnn saves {"iteration": ..., "model": state_dict}; torchvggish saves the bare state dict.
    torch.save({"iteration": 0, "model": Cnn14().state_dict()}, root / "Cnn14_16k_mAP=0.438.pth")
    torch.save(VGGish().state_dict(), root / "vggish-10086976.pth")
    model, processor = tiny_clap_model()
    model.save_pretrained(root / "clap")
    processor.save_pretrained(root / "clap")
    panns, vggish = root / "Cnn14_16k_mAP=0.438.pth", root / "vggish-10086976.pth"
    return {
        "panns": panns,
        "panns_sha256": sha256(panns),
        "vggish": vggish,
        "vggish_sha256": sha256(vggish),
        "clap": root / "clap",
    }


# ----------------------------------------------------------------------------------------------------------------
# Front-ends against librosa


def test_panns_mel_filters_equal_librosa():
    expected = librosa.filters.mel(sr=16000, n_fft=512, n_mels=64, fmin=50, fmax=8000)  # htk=False, norm="slaney"
    np.testing.assert_allclose(PannsLogMel().melW.numpy().T, expected, rtol=1e-5, atol=1e-8)


def test_panns_power_spectrogram_equals_librosa_stft():
    waveform = sine(440.0, 1.0) + 0.01 * np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    power = PannsSpectrogram()(torch.from_numpy(waveform)[None])[0, 0].double().numpy()
    stft = librosa.stft(
        waveform.astype(np.float64), n_fft=512, hop_length=160, window="hann", center=True, pad_mode="reflect"
    )
    expected = (np.abs(stft) ** 2).T  # (frames, bins)
    assert power.shape == expected.shape == (101, 257)
    np.testing.assert_allclose(power, expected, rtol=1e-3, atol=1e-4 * expected.max())


def test_panns_log_mel_of_a_sine_equals_librosa_power_to_db():
    waveform = sine(1000.0, 1.0) + 0.001 * np.random.default_rng(1).standard_normal(16000).astype(np.float32)
    log_mel = PannsLogMel()(PannsSpectrogram()(torch.from_numpy(waveform)[None]))[0, 0].numpy()
    mel = librosa.feature.melspectrogram(
        y=waveform.astype(np.float64),
        sr=16000,
        n_fft=512,
        hop_length=160,
        window="hann",
        center=True,
        pad_mode="reflect",
        power=2.0,
        n_mels=64,
        fmin=50,
        fmax=8000,
    )
    expected = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None).T
    assert log_mel.shape == expected.shape == (101, 64)
    # float32 (as the checkpoint's convolutional STFT) against librosa's float64: exact to 0.002 dB within 60 dB of
    # the peak, to 0.05 dB down to −80 dB.
    loud = expected > expected.max() - 60.0
    np.testing.assert_allclose(log_mel[loud], expected[loud], atol=2e-3)
    np.testing.assert_allclose(log_mel, expected, atol=5e-2)
    # The loudest band is the one whose centre is nearest 1 kHz.
    centres = librosa.mel_frequencies(n_mels=66, fmin=50, fmax=8000)[1:-1]
    assert log_mel[50].argmax() == np.abs(centres - 1000.0).argmin()
    # Silence is 10·log10(amin) = −100 dB (top_db None: no clamping relative to the maximum).
    silence = PannsLogMel()(PannsSpectrogram()(torch.zeros(1, 16000)))
    assert torch.all(silence == -100.0)


def test_vggish_mel_filters_are_htk_triangles_in_mel():
    weights = vggish_mel_filterbank()
    bin_mels = librosa.hz_to_mel(np.linspace(0, 8000, 257), htk=True)
    edges = np.linspace(librosa.hz_to_mel(125.0, htk=True), librosa.hz_to_mel(7500.0, htk=True), 66)
    expected = np.stack(
        [
            np.maximum(0, np.minimum((bin_mels - lo) / (mid - lo), (hi - bin_mels) / (hi - mid)))
            for lo, mid, hi in zip(edges[:-2], edges[1:-1], edges[2:])
        ],
        axis=1,
    )
    expected[0] = 0.0
    assert weights.shape == (257, 64)
    np.testing.assert_allclose(weights, expected, atol=1e-12)
    assert weights.sum(axis=1)[np.linspace(0, 8000, 257) > 7500].max() == 0.0  # nothing above 7.5 kHz


def test_vggish_log_mel_frames_and_log_offset():
    waveform = sine(1000.0, 1.0) + 0.01 * np.random.default_rng(2).standard_normal(16000)
    log_mel = vggish_log_mel(waveform)
    # 25 ms periodic-Hann frames every 10 ms, no padding, |512-point rfft| (zero-padded at the end).
    frames = librosa.util.frame(waveform, frame_length=400, hop_length=160, axis=0)
    magnitude = np.abs(np.fft.rfft(frames * librosa.filters.get_window("hann", 400, fftbins=True), 512))
    expected = np.log(magnitude @ vggish_mel_filterbank() + 0.01)
    assert log_mel.shape == (1 + (16000 - 400) // 160, 64) == (98, 64)
    np.testing.assert_allclose(log_mel, expected, rtol=1e-10, atol=1e-10)
    band_centres = librosa.mel_to_hz(
        np.linspace(librosa.hz_to_mel(125.0, htk=True), librosa.hz_to_mel(7500.0, htk=True), 66)[1:-1], htk=True
    )
    assert log_mel.mean(axis=0).argmax() == np.abs(band_centres - 1000.0).argmin()
    np.testing.assert_allclose(vggish_log_mel(np.zeros(4000)), np.log(0.01))


def test_vggish_examples_are_non_overlapping_96_frame_patches():
    waveform = np.random.default_rng(3).standard_normal(163840) * 0.1  # 10.24 s
    examples = vggish_examples(waveform)
    expected = librosa.util.frame(vggish_log_mel(waveform), frame_length=96, hop_length=96, axis=0)
    assert examples.shape == (10, 1, 96, 64) and examples.dtype == torch.float32
    np.testing.assert_allclose(examples[:, 0].numpy(), expected.astype(np.float32))
    assert vggish_examples(np.zeros(160000)).shape[0] == 10  # a 10 s clip gives 10 embeddings
    assert vggish_examples(np.zeros(15600)).shape[0] == 1  # 400 + 95 · 160 samples: exactly one example
    with pytest.raises(ValueError, match="at least 15600 samples"):
        vggish_examples(np.zeros(15599))


# ----------------------------------------------------------------------------------------------------------------
# Networks: checkpoint layouts, loading, outputs

# The released Cnn14_16k_mAP=0.438.pth "model" entry: torchlibrosa front-end, bn0, six conv blocks, fc1, fc_audioset.
CNN14_BLOCK_KEYS = ["conv1.weight", "conv2.weight"] + [
    f"{norm}.{name}"
    for norm in ("bn1", "bn2")
    for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
]
CNN14_KEYS = (
    [
        "spectrogram_extractor.stft.conv_real.weight",
        "spectrogram_extractor.stft.conv_imag.weight",
        "logmel_extractor.melW",
    ]
    + [f"bn0.{name}" for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]
    + [f"conv_block{block}.{key}" for block in range(1, 7) for key in CNN14_BLOCK_KEYS]
    + ["fc1.weight", "fc1.bias", "fc_audioset.weight", "fc_audioset.bias"]
)
# torchvggish's vggish-10086976.pth: VGG `features` (conv layers at Sequential indices 0, 3, 6, 8, 11, 13) and
# `embeddings` (Linear layers at 0, 2, 4).
VGGISH_SHAPES = {
    "features.0.weight": (64, 1, 3, 3),
    "features.0.bias": (64,),
    "features.3.weight": (128, 64, 3, 3),
    "features.3.bias": (128,),
    "features.6.weight": (256, 128, 3, 3),
    "features.6.bias": (256,),
    "features.8.weight": (256, 256, 3, 3),
    "features.8.bias": (256,),
    "features.11.weight": (512, 256, 3, 3),
    "features.11.bias": (512,),
    "features.13.weight": (512, 512, 3, 3),
    "features.13.bias": (512,),
    "embeddings.0.weight": (4096, 12288),
    "embeddings.0.bias": (4096,),
    "embeddings.2.weight": (4096, 4096),
    "embeddings.2.bias": (4096,),
    "embeddings.4.weight": (128, 4096),
    "embeddings.4.bias": (128,),
}


def test_cnn14_state_dict_has_the_released_checkpoint_layout():
    model = Cnn14()
    state_dict = model.state_dict()
    assert list(state_dict) == CNN14_KEYS and len(state_dict) == 84
    shapes = {name: tuple(value.shape) for name, value in state_dict.items()}
    assert shapes["spectrogram_extractor.stft.conv_real.weight"] == (257, 1, 512)
    assert shapes["logmel_extractor.melW"] == (257, 64)
    assert shapes["bn0.weight"] == (64,)
    assert shapes["conv_block1.conv1.weight"] == (64, 1, 3, 3)
    assert shapes["conv_block6.conv2.weight"] == (2048, 2048, 3, 3)
    assert shapes["fc1.weight"] == (2048, 2048) and shapes["fc_audioset.weight"] == (527, 2048)
    # evaluation.md §1: Cnn14 (16 kHz) has 81.03 M parameters.
    assert round(sum(parameter.numel() for parameter in model.parameters()) / 1e6, 2) == 81.03


def test_cnn14_loads_strictly_and_outputs_embedding_and_logits(checkpoints):
    model = Cnn14.from_pretrained(checkpoints["panns"], sha256=checkpoints["panns_sha256"])
    assert not model.training
    expected = torch.load(checkpoints["panns"], weights_only=True)["model"]
    for name, value in model.state_dict().items():
        assert torch.equal(value, expected[name]), name
    waveforms = torch.from_numpy(np.stack([sine(440.0, 2.0), sine(3000.0, 2.0, 0.1)]))
    with torch.no_grad():
        output = model(waveforms)
        single = model(waveforms[1:])
        embedding, logits = model(waveforms, return_dict=False)
    assert output.embedding.shape == (2, 2048) and output.logits.shape == (2, 527)
    assert bool((output.embedding >= 0).all())  # post-ReLU "2048" feature
    torch.testing.assert_close(output.logits, model.fc_audioset(output.embedding))  # pre-sigmoid logits
    torch.testing.assert_close(single.logits, output.logits[1:], rtol=1e-4, atol=1e-5)  # batch size does not matter
    assert torch.equal(embedding, output.embedding) and torch.equal(logits, output.logits)
    assert not torch.allclose(output.logits[0], output.logits[1])

    incomplete = {name: value for name, value in expected.items() if name != "fc1.bias"}
    incomplete_file = checkpoints["panns"].with_name("incomplete.pth")
    torch.save({"model": incomplete}, incomplete_file)
    with pytest.raises(RuntimeError, match="fc1.bias"):
        Cnn14.from_pretrained(incomplete_file, sha256=sha256(incomplete_file))


def test_vggish_state_dict_layout_loading_and_pre_relu_embeddings(checkpoints):
    model = VGGish()
    assert {name: tuple(value.shape) for name, value in model.state_dict().items()} == VGGISH_SHAPES
    assert sum(parameter.numel() for parameter in model.parameters()) == 72_141_184
    loaded = VGGish.from_pretrained(checkpoints["vggish"], sha256=checkpoints["vggish_sha256"])
    assert not loaded.training
    examples = vggish_examples(np.random.default_rng(4).standard_normal(160000) * 0.1)
    with torch.no_grad():
        embeddings = loaded(examples)
    assert embeddings.shape == (10, 128)
    assert bool((embeddings < 0).any())  # audioldm_eval drops the final ReLU (use_activation=False)
    # The last layer's output, nothing after it: re-derive it from the layers.
    with torch.no_grad():
        hidden = loaded.features(examples).permute(0, 2, 3, 1).flatten(1)
        expected = loaded.embeddings[4](torch.relu(loaded.embeddings[2](torch.relu(loaded.embeddings[0](hidden)))))
    torch.testing.assert_close(embeddings, expected)


def test_missing_or_unreachable_checkpoints_name_where_to_get_them(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"zenodo\.org/record/3987831/files/Cnn14_16k_mAP%3D0\.438\.pth"):
        Cnn14.from_pretrained(tmp_path / "Cnn14_16k_mAP=0.438.pth")
    with pytest.raises(FileNotFoundError, match=r"github\.com/harritaylor/torchvggish/releases/download/v0\.1/vggish"):
        VGGish.from_pretrained(tmp_path / "vggish.pth")

    def unreachable(url, destination, progress=True):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", unreachable)
    with pytest.raises(
        OSError, match=r"Could not download the VGGish checkpoint .*network is unreachable.*Download it"
    ):
        VGGish.from_pretrained("https://example.com/vggish-10086976.pth")

    def no_hub(repo_id, filename):
        raise OSError(f"offline: {repo_id}/{filename}")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", no_hub)
    with pytest.raises(OSError, match=r"offline: someone/panns/Cnn14\.pth.*zenodo\.org"):
        Cnn14.from_pretrained("hf://someone/panns/Cnn14.pth")
    with pytest.raises(ValueError, match="hf://<owner>/<repo>/<path in repo>"):
        Cnn14.from_pretrained("hf://someone/Cnn14.pth")
    with pytest.raises(OSError, match="laion/clap-htsat-fused"):
        ClapScorer.from_pretrained(tmp_path / "no-clap-here")


def test_hostile_pickles_are_refused_from_every_source_and_never_run(tmp_path, monkeypatch):
    marker = tmp_path / "code-ran"
    hostile = tmp_path / "Cnn14_16k_mAP=0.438.pth"
    torch.save({"iteration": 0, "model": {"weight": torch.ones(1)}, "payload": Payload(marker)}, hostile)
    torch.load(hostile, weights_only=False)  # the payload works: a full unpickling runs it
    assert marker.is_file()
    marker.unlink()
    digest = sha256(hostile)

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(
        torch.hub,
        "download_url_to_file",
        lambda url, destination, progress=True: shutil.copyfile(hostile, destination),
    )
    monkeypatch.setattr("huggingface_hub.hf_hub_download", lambda repo_id, filename: str(hostile))
    for source in [hostile, "https://example.com/Cnn14_16k_mAP%3D0.438.pth", "hf://someone/panns/Cnn14.pth"]:
        # Not the official file: refused before it is read.
        with pytest.raises(
            ValueError,
            match=f"is not the official file: its SHA-256 is {digest}, the official "
            f"file's is {PANNS_CNN14_16K_SHA256}",
        ):
            Cnn14.from_pretrained(source)
        # Its own hash passed: read with weights_only, which refuses the payload.
        with pytest.raises(pickle.UnpicklingError, match="not unpickled because unpickling can run arbitrary code"):
            Cnn14.from_pretrained(source, sha256=digest)
        assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError, match=r"VGGish checkpoint .* holds pickled objects other than"):
        VGGish.from_pretrained(hostile, sha256=digest)
    assert not marker.exists()


def save_as_numpy_1(checkpoint: dict, path: Path):
    """`torch.save` with NumPy arrays pickled under NumPy 1's name, as in the released PANNs file."""
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer, _use_new_zipfile_serialization=False)  # one plain pickle stream, safe to edit
    path.write_bytes(buffer.getvalue().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))


def test_panns_training_state_loads_with_only_int64_numpy_arrays_allowed(tmp_path):
    # audioset_tagging_cnn's checkpoint: the model and BalancedTrainSampler.state_dict() (int64 index arrays).
    indexes = [np.array([4, 1], dtype=np.int64), np.array([3], dtype=np.int64)]
    sampler = {"indexes_per_class": indexes, "queue": [1, 0], "pointers_of_classes": [0, 1]}
    path = tmp_path / "panns.pth"
    save_as_numpy_1({"iteration": 540000, "model": {"weight": torch.arange(3.0)}, "sampler": sampler}, path)
    assert b"numpy.core.multiarray\n_reconstruct" in path.read_bytes()
    loaded = load_checkpoint(path, "demo", "u", PANNS_CNN14_16K_SHA256, sha256(path))
    assert list(loaded) == ["weight"] and torch.equal(loaded["weight"], torch.arange(3.0))
    # Any other NumPy type is refused.
    path = tmp_path / "float64.pth"
    torch.save({"model": {}, "scale": np.ones(2)}, path)
    with pytest.raises(pickle.UnpicklingError, match="float64.pth holds pickled objects other than tensors"):
        load_checkpoint(path, "demo", "u", PANNS_CNN14_16K_SHA256, sha256(path))


def test_checkpoint_hash_mismatch_names_the_file_both_hashes_and_what_to_do(tmp_path):
    path = tmp_path / "vggish-10086976.pth"
    torch.save({"weight": torch.ones(1)}, path)
    digest = sha256(path)
    with pytest.raises(ValueError) as error:
        VGGish.from_pretrained(path)
    assert str(error.value) == (
        f"VGGish checkpoint {path} is not the official file: its SHA-256 is {digest}, the official file's is "
        f"{VGGISH_SHA256}. It was not loaded. Download the official file from {VGGISH_URL}, or pass the SHA-256 of a "
        "checkpoint of your own as `sha256` to load that one."
    )
    with pytest.raises(ValueError, match=f"has SHA-256 {digest}, not the {'0' * 64} passed as `sha256`"):
        VGGish.from_pretrained(path, sha256="0" * 64)
    with pytest.raises(ValueError, match="`sha256` must be 64 hexadecimal digits .* got '10086976'"):
        VGGish.from_pretrained(path, sha256="10086976")
    assert torch.equal(load_checkpoint(path, "demo", "u", VGGISH_SHA256, digest.upper())["weight"], torch.ones(1))


def test_downloads_are_cached_by_sha256_not_by_file_name(tmp_path, monkeypatch):
    torch.save({"weight": torch.full((2,), 1.0)}, tmp_path / "a.pth")
    torch.save({"weight": torch.full((2,), 2.0)}, tmp_path / "b.pth")
    hashes = {name: sha256(tmp_path / f"{name}.pth") for name in "ab"}
    served = {
        "https://a.example/model.pth": tmp_path / "a.pth",
        "https://b.example/model.pth": tmp_path / "b.pth",
        "https://mirror.example/copy.pth": tmp_path / "a.pth",
    }  # two files with one name, one file at two URLs
    downloads = []

    def download(url, destination, progress=True):
        downloads.append(url)
        shutil.copyfile(served[url], destination)

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save({"weight": torch.zeros(2)}, cache / "model.pth")  # what a cache by file name would have reused
    for _ in range(2):  # each file downloaded once, then read from the cache
        assert load_checkpoint("https://a.example/model.pth", "demo", "u", "0" * 64, hashes["a"])["weight"][0] == 1
        assert load_checkpoint("https://b.example/model.pth", "demo", "u", "0" * 64, hashes["b"])["weight"][0] == 2
    # The same file under another URL is not downloaded again.
    assert load_checkpoint("https://mirror.example/copy.pth", "demo", "u", "0" * 64, hashes["a"])["weight"][0] == 1
    assert downloads == ["https://a.example/model.pth", "https://b.example/model.pth"]
    assert sorted(path.name for path in (cache / "sha256").iterdir()) == sorted(hashes.values())

    # A download that is not the expected file is refused and not kept.
    with pytest.raises(ValueError, match=r"https://a\.example/model\.pth is not the official file"):
        load_checkpoint("https://a.example/model.pth", "demo", "u", PANNS_CNN14_16K_SHA256)
    assert sorted(path.name for path in (cache / "sha256").iterdir()) == sorted(hashes.values())

    requests = []
    monkeypatch.setattr(
        "huggingface_hub.hf_hub_download",
        lambda repo_id, filename: requests.append((repo_id, filename)) or str(tmp_path / "b.pth"),
    )
    assert load_checkpoint("hf://owner/repo/sub/dir/file.pth", "demo", "u", hashes["b"])["weight"][0] == 2
    assert requests == [("owner/repo", "sub/dir/file.pth")]


# ----------------------------------------------------------------------------------------------------------------
# CLAP score


def test_clap_score_is_the_mean_cosine_of_deterministic_embeddings():
    model, processor = tiny_clap_model()
    clips = [sine(440.0, 1.0), sine(2000.0, 3.0, 0.2), np.random.default_rng(5).standard_normal(8000) * 0.1]
    texts = ["a dog bark", "rain on the car", "a loud engine"]
    scorer = ClapScorer(model, processor, batch_size=3)
    similarities = scorer.similarities(clips, texts, sampling_rate=16000)
    assert similarities.shape == (3,) and np.all(np.abs(similarities) <= 1.0 + 1e-6)
    assert scorer(clips, texts, sampling_rate=16000) == pytest.approx(similarities.mean(), abs=1e-12)

    # Independent of the batch size and of NumPy's global RNG (🤗's extractor draws a random `is_longer`).
    np.random.seed(1)
    one_by_one = ClapScorer(model, processor, batch_size=1).similarities(clips, texts, sampling_rate=16000)
    np.testing.assert_allclose(one_by_one, similarities, rtol=1e-5, atol=1e-6)

    # By hand: 48 kHz audio through the fused model's non-fusion path, text through the text tower, cosine.
    audio_48k = librosa.resample(clips[1].astype(np.float64), orig_sr=16000, target_sr=48000, res_type="polyphase")
    inputs = processor.feature_extractor([audio_48k], sampling_rate=48000, return_tensors="pt")
    tokens = processor.tokenizer([texts[1]], return_tensors="pt")
    with torch.no_grad():
        audio = model.get_audio_features(input_features=inputs["input_features"], is_longer=torch.tensor([[False]]))
        text = model.get_text_features(**tokens)
    expected = F.cosine_similarity(audio.pooler_output, text.pooler_output).item()
    assert similarities[1] == pytest.approx(expected, abs=1e-5)
    # The random `is_longer=True` that 🤗 would give this lone clip takes the fusion path: a different embedding.
    with torch.no_grad():
        fused = model.get_audio_features(input_features=inputs["input_features"], is_longer=torch.tensor([[True]]))
    assert not torch.allclose(fused.pooler_output, audio.pooler_output, atol=1e-4)


def test_clap_audio_is_resampled_to_48k_and_cut_to_10_seconds():
    model, processor = tiny_clap_model()
    scorer = ClapScorer(model, processor)
    prepared = scorer.prepare_audio(sine(1000.0, 1.0), 16000)
    assert scorer.sampling_rate == 48000 and prepared.shape == (48000,)
    spectrum = np.abs(np.fft.rfft(prepared))
    assert np.fft.rfftfreq(48000, 1 / 48000)[spectrum.argmax()] == pytest.approx(1000.0)
    long_clip = np.random.default_rng(6).standard_normal(16000 * 12) * 0.1  # 12 s: only the first 10 s count
    assert scorer.prepare_audio(long_clip, 16000).shape == (480000,)
    embeddings = scorer.audio_embeddings([long_clip, long_clip[: 16000 * 10]], sampling_rate=16000)
    # Equal but for the resampling filter's few samples at the cut (resampled then cut vs cut then resampled).
    torch.testing.assert_close(embeddings[0], embeddings[1], rtol=0, atol=1e-4)
    assert not torch.allclose(embeddings[0], scorer.audio_embeddings([long_clip[16000 * 2 :]], 16000)[0], atol=1e-3)
    # Captions longer than CLAP's 77 tokens are truncated (the tiny text model has 80 positions).
    assert scorer.text_embeddings(["a dog bark " * 60]).shape == (1, 8)
    with pytest.raises(ValueError, match="paired one to one"):
        scorer.similarities([prepared], ["a", "b"], 48000)


# ----------------------------------------------------------------------------------------------------------------
# Folders


def write_clips(folder: Path, names, seconds: float = 1.0, sampling_rate: int = SAMPLING_RATE, seed: int = 0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        soundfile.write(folder / f"{name}.wav", 0.1 * rng.standard_normal(int(seconds * sampling_rate)), sampling_rate)


def test_audio_folders_are_listed_by_clip_name_and_read_as_audioldm_eval(tmp_path):
    write_clips(tmp_path / "clips", ["b", "a"])
    (tmp_path / "clips" / ".c.wav.tmp").write_bytes(b"partial")  # an interrupted write is not a clip
    (tmp_path / "clips" / "notes.json").write_text("{}")
    assert list(list_audio_files(tmp_path / "clips")) == ["a", "b"]
    soundfile.write(tmp_path / "clips" / "a.flac", np.zeros(100), SAMPLING_RATE)
    with pytest.raises(ValueError, match="both clip 'a'"):
        list_audio_files(tmp_path / "clips")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="has no audio files"):
        list_audio_files(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_audio_files(tmp_path / "missing")

    # First channel only, DC removed, resampled to 16 kHz, zero-padded to 2 s.
    time = np.arange(32000) / 32000
    stereo = np.stack([0.3 + 0.2 * np.sin(2 * np.pi * 500 * time), np.ones_like(time) * 0.9], axis=1)
    soundfile.write(tmp_path / "stereo.wav", stereo, 32000, subtype="FLOAT")
    waveform = load_evaluation_audio(tmp_path / "stereo.wav")
    assert waveform.shape == (32000,) and waveform.dtype == np.float32
    assert np.all(waveform[16000:] == 0.0)  # 1 s of audio, then padding
    assert abs(waveform[:16000].mean()) < 1e-3 and np.abs(waveform[100:15900]).max() == pytest.approx(0.2, abs=1e-3)


def test_evaluator_computes_table_1_columns_from_paired_features(tmp_path, monkeypatch, checkpoints):
    write_clips(tmp_path / "generated", ["x", "y", "z"], seconds=1.5, seed=1)
    write_clips(tmp_path / "reference", ["x", "y", "z"], seconds=3.0, sampling_rate=32000, seed=2)
    model, processor = tiny_clap_model()
    evaluator = AudioEvaluator(
        Cnn14.from_pretrained(checkpoints["panns"], sha256=checkpoints["panns_sha256"]),
        VGGish.from_pretrained(checkpoints["vggish"], sha256=checkpoints["vggish_sha256"]),
        clap=ClapScorer(model, processor, batch_size=2),
    )
    captions = {"x": "a dog bark", "y": "rain", "z": "a cat meow"}
    generated = evaluator.extract_features(tmp_path / "generated", captions=captions, progress=False)
    reference = evaluator.extract_features(tmp_path / "reference", progress=False)
    assert generated["names"] == ["x", "y", "z"] and reference["clap_similarities"] is None
    assert generated["panns_embeddings"].shape == (3, 2048) and generated["panns_logits"].shape == (3, 527)
    assert generated["vggish_embeddings"].shape == (6, 128)  # 1.5 s padded to 2 s: two VGGish frames per clip
    assert reference["vggish_embeddings"].shape == (9, 128)  # 3 s: three frames per clip, pooled over clips

    # Fréchet distances are checked in the end-to-end test (2048-d sqrtm is slow); here, which features they get.
    calls = []
    monkeypatch.setattr(
        evaluator_module,
        "frechet_distance_from_features",
        lambda first, second: calls.append((first, second)) or float(len(calls)),
    )
    metrics = evaluator.evaluate(tmp_path / "generated", tmp_path / "reference", captions=captions, progress=False)
    np.testing.assert_array_equal(calls[0][0], generated["panns_embeddings"])
    np.testing.assert_array_equal(calls[0][1], reference["panns_embeddings"])
    np.testing.assert_array_equal(calls[1][0], generated["vggish_embeddings"])
    np.testing.assert_array_equal(calls[1][1], reference["vggish_embeddings"])
    expected_kl = kl_divergence(
        dict(zip("xyz", reference["panns_logits"])), dict(zip("xyz", generated["panns_logits"]))
    )
    expected_is = inception_score(generated["panns_logits"], splits=3)
    clap = ClapScorer(model, processor).similarities(
        [soundfile.read(tmp_path / "generated" / f"{name}.wav")[0] for name in "xyz"], list(captions.values()), 16000
    )
    assert metrics == {
        "FD": 1.0,
        "FAD": 2.0,
        "KL": pytest.approx(expected_kl),
        "IS": pytest.approx(expected_is[0]),
        "IS_std": pytest.approx(expected_is[1]),
        "CLAP": pytest.approx(clap.mean(), abs=1e-6),
        "num_clips": 3,
    }

    write_clips(tmp_path / "other", ["x", "y", "w"])
    with pytest.raises(ValueError, match=r"Only generated: z\. Only reference: w\."):
        evaluator.evaluate(tmp_path / "generated", tmp_path / "other", progress=False)
    with pytest.raises(ValueError, match=r"No caption for clip\(s\) z"):
        evaluator.evaluate(
            tmp_path / "generated", tmp_path / "reference", captions={"x": "a", "y": "b"}, progress=False
        )
    with pytest.raises(ValueError, match="no CLAP scorer"):
        AudioEvaluator(evaluator.panns, evaluator.vggish).evaluate(
            tmp_path / "generated", tmp_path / "reference", captions=captions, progress=False
        )


# ----------------------------------------------------------------------------------------------------------------
# examples/evaluation/evaluate.py


def run_script(*arguments) -> subprocess.CompletedProcess:
    command = [sys.executable, str(example("evaluate.py")), *map(str, arguments)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.slow
def test_evaluate_script_generates_resumes_and_scores_against_references(tmp_path, checkpoints):
    tiny_impact_pipeline().save_pretrained(tmp_path / "pipeline")
    ids = ["clip-a", "clip_b", "clip3", "d"]
    captions = ["a dog bark", "rain on the car", "a cat meow", "loud engine"]
    rows = [f"{clip_id},{caption}" for clip_id, caption in zip(ids, captions)] + ["clip_b,a second caption"]
    (tmp_path / "captions.csv").write_text("id,caption\n" + "\n".join(rows) + "\n")
    generated = tmp_path / "generated"
    common = [
        "--pipeline",
        tmp_path / "pipeline",
        "--output_dir",
        generated,
        "--num_inference_steps",
        4,
        "--num_diffusion_steps",
        5,
        "--device",
        "cpu",
    ]

    result = run_script("--captions", tmp_path / "captions.csv", "--batch_size", 3, *common)
    assert result.returncode == 0, result.stderr
    assert "5 rows, 4 distinct ids" in result.stdout and "0 of 4 clips already" in result.stdout
    assert sorted(path.name for path in generated.iterdir()) == sorted(f"{clip_id}.wav" for clip_id in ids)
    audio = {}
    for clip_id in ids:
        info = soundfile.info(generated / f"{clip_id}.wav")
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (16000, 1, 10240, "PCM_16")
        audio[clip_id] = soundfile.read(generated / f"{clip_id}.wav", dtype="int16")[0]
        assert np.abs(audio[clip_id]).max() > 100
    assert not np.array_equal(audio["clip-a"], audio["clip_b"])

    # Resume after an interruption: one clip missing, a partial temporary file left behind; batches of 2 this time.
    modified = {clip_id: (generated / f"{clip_id}.wav").stat().st_mtime_ns for clip_id in ids}
    (generated / "clip3.wav").unlink()
    (generated / ".clip3.wav.tmp").write_bytes(b"partial")
    load_example("evaluate").main(
        ["--captions", str(tmp_path / "captions.csv"), "--batch_size", "2", *map(str, common)]
    )
    assert sorted(path.name for path in generated.iterdir()) == sorted(f"{clip_id}.wav" for clip_id in ids)
    for clip_id in ["clip-a", "clip_b", "d"]:
        assert (generated / f"{clip_id}.wav").stat().st_mtime_ns == modified[clip_id]
    # Clip i always uses seed + i: the regenerated clip is the one the first run wrote (batch size 1 instead of 3
    # only changes floating-point rounding: at most one 16-bit step on a few samples).
    regenerated = soundfile.read(generated / "clip3.wav", dtype="int16")[0].astype(int)
    assert np.abs(regenerated - audio["clip3"]).max() <= 1 and np.mean(regenerated != audio["clip3"]) < 0.01

    # A datasets dataset with reference audio (22.05 kHz stereo): references are written as 16 kHz mono, then scored.
    import datasets

    sources = tmp_path / "sources"
    sources.mkdir()
    rng = np.random.default_rng(7)
    for clip_id in ids:
        soundfile.write(sources / f"{clip_id}.wav", 0.1 * rng.standard_normal((22050 * 2, 2)), 22050)
    dataset = datasets.Dataset.from_dict(
        {"id": ids, "caption": captions, "audio": [str(sources / f"{clip_id}.wav") for clip_id in ids]}
    ).cast_column("audio", datasets.Audio(decode=False))
    dataset.save_to_disk(tmp_path / "dataset")
    reference = tmp_path / "reference"
    result = run_script(
        "--captions",
        tmp_path / "dataset",
        "--reference_dir",
        reference,
        "--panns_checkpoint",
        checkpoints["panns"],
        "--vggish_checkpoint",
        checkpoints["vggish"],
        "--clap_model",
        checkpoints["clap"],
        *common,
        "--panns_sha256",
        checkpoints["panns_sha256"],
        "--vggish_sha256",
        checkpoints["vggish_sha256"],
    )
    assert result.returncode == 0, result.stderr
    assert "4 of 4 clips already" in result.stdout
    for clip_id in ids:
        info = soundfile.info(reference / f"{clip_id}.wav")
        assert (info.samplerate, info.channels, info.frames) == (16000, 1, 32000)
    metrics = json.loads((tmp_path / "generated_metrics.json").read_text())
    assert metrics["num_clips"] == 4 and metrics["settings"]["num_inference_steps"] == 4
    for name in ["FD", "FAD", "KL", "IS", "IS_std", "CLAP"]:
        assert np.isfinite(metrics[name]), name
    assert metrics["FD"] > -1e-6 and metrics["FAD"] > -1e-6 and metrics["IS"] >= 1.0 - 1e-9

    # The same numbers in-process, from the features of the same networks (FD aside: its 2048-d sqrtm is slow).
    model, processor = (
        ClapModel.from_pretrained(checkpoints["clap"]),
        ClapProcessor.from_pretrained(checkpoints["clap"]),
    )
    evaluator = AudioEvaluator(
        Cnn14.from_pretrained(checkpoints["panns"], sha256=checkpoints["panns_sha256"]),
        VGGish.from_pretrained(checkpoints["vggish"], sha256=checkpoints["vggish_sha256"]),
        clap=ClapScorer(model.eval(), processor),
    )
    ours = evaluator.extract_features(generated, captions=dict(zip(ids, captions)), progress=False)
    theirs = evaluator.extract_features(reference, progress=False)
    assert metrics["KL"] == pytest.approx(
        kl_divergence(
            dict(zip(theirs["names"], theirs["panns_logits"])), dict(zip(ours["names"], ours["panns_logits"]))
        ),
        rel=1e-4,
        abs=1e-6,
    )
    assert metrics["IS"] == pytest.approx(inception_score(ours["panns_logits"], splits=4)[0], rel=1e-5)
    assert metrics["CLAP"] == pytest.approx(float(ours["clap_similarities"].mean()), abs=1e-5)
    fad = evaluator_module.frechet_distance_from_features(ours["vggish_embeddings"], theirs["vggish_embeddings"])
    assert metrics["FAD"] == pytest.approx(fad, rel=1e-4, abs=1e-6)


@pytest.mark.slow
def test_evaluate_script_shares_clips_between_processes_then_scores_once(tmp_path, checkpoints):
    """Two CPU processes (torchrun, as `accelerate launch` starts them): each writes its share of the clips, the same
    audio as one process writes (clip i uses seed + i), and the main process alone scores them."""
    tiny_impact_pipeline().save_pretrained(tmp_path / "pipeline")
    ids = [f"clip{index}" for index in range(5)]
    (tmp_path / "captions.csv").write_text("id,caption\n" + "".join(f"{i},sound number {i}\n" for i in ids))
    reference = tmp_path / "reference"
    reference.mkdir()
    rng = np.random.default_rng(3)
    for clip_id in ids:
        soundfile.write(reference / f"{clip_id}.wav", 0.1 * rng.standard_normal(16000), 16000)
    common = [
        "--pipeline",
        tmp_path / "pipeline",
        "--captions",
        tmp_path / "captions.csv",
        "--num_inference_steps",
        3,
        "--num_diffusion_steps",
        4,
        "--batch_size",
        2,
        "--device",
        "cpu",
    ]
    scoring = [
        "--reference_dir",
        reference,
        "--panns_checkpoint",
        checkpoints["panns"],
        "--panns_sha256",
        checkpoints["panns_sha256"],
        "--vggish_checkpoint",
        checkpoints["vggish"],
        "--vggish_sha256",
        checkpoints["vggish_sha256"],
        "--clap_model",
        checkpoints["clap"],
    ]
    result = run_on_two_cpu_processes(example("evaluate.py"), *common, "--output_dir", tmp_path / "two", *scoring)
    assert "generating 3 (process 0 of 2)" in result.stdout and "generating 2 (process 1 of 2)" in result.stdout
    metrics = json.loads((tmp_path / "two_metrics.json").read_text())
    assert metrics["num_clips"] == 5 and result.stdout.count("CLAP:") == 1  # scored once, by the main process

    assert run_script(*common, "--output_dir", tmp_path / "one").returncode == 0
    for clip_id in ids:
        one = soundfile.read(tmp_path / "one" / f"{clip_id}.wav", dtype="int16")[0].astype(int)
        two = soundfile.read(tmp_path / "two" / f"{clip_id}.wav", dtype="int16")[0].astype(int)
        assert np.abs(one - two).max() <= 1, clip_id  # other batches: at most one 16-bit step of rounding


def test_evaluate_script_fails_before_generating_when_a_checkpoint_is_missing(tmp_path):
    (tmp_path / "captions.json").write_text(json.dumps({"data": [{"id": "a", "caption": "a dog bark"}]}))
    (tmp_path / "reference").mkdir()
    arguments = [
        "--pipeline",
        str(tmp_path / "no-pipeline-needed"),
        "--captions",
        str(tmp_path / "captions.json"),
        "--output_dir",
        str(tmp_path / "generated"),
        "--reference_dir",
        str(tmp_path / "reference"),
        "--panns_checkpoint",
        str(tmp_path / "Cnn14_16k_mAP=0.438.pth"),
        "--device",
        "cpu",
    ]
    with pytest.raises(FileNotFoundError, match=r"zenodo\.org/record/3987831"):
        load_example("evaluate").main(arguments)
    torch.save({"model": {}}, tmp_path / "Cnn14_16k_mAP=0.438.pth")  # not the official file, and no --panns_sha256
    with pytest.raises(ValueError, match=r"Cnn14_16k_mAP=0\.438\.pth is not the official file"):
        load_example("evaluate").main(arguments)
    assert list((tmp_path / "generated").iterdir()) == []
    (tmp_path / "bad.csv").write_text("youtube_id,text\nabc,a dog\n")
    with pytest.raises(
        ValueError, match=r"no column\(s\) \['id', 'caption'\]; its columns are \['text', 'youtube_id'\]"
    ):
        load_example("evaluate").main(
            [
                "--pipeline",
                "unused",
                "--captions",
                str(tmp_path / "bad.csv"),
                "--output_dir",
                str(tmp_path / "generated"),
            ]
        )
    (tmp_path / "slash.jsonl").write_text(json.dumps({"id": "a/b", "caption": "x"}) + "\n")
    with pytest.raises(ValueError, match="cannot be a file name"):
        load_example("evaluate").main(
            [
                "--pipeline",
                "unused",
                "--captions",
                str(tmp_path / "slash.jsonl"),
                "--output_dir",
                str(tmp_path / "generated"),
            ]
        )
