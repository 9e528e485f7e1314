"""End-to-end training with the example scripts on a tiny AudioLDM-format pipeline and clips made here (CPU, offline)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from helpers import Payload, example, run_on_two_cpu_processes
from safetensors.torch import load_file

from diffusers_impact import ImpactPipeline, ImpactTransformer
from diffusers_impact.testing_utils import tiny_impact_components
from diffusers_impact.training import checkpoints
from diffusers_impact.training.data import (
    LatentCaptionDataset,
    collate_latent_captions,
    load_latent_dataset,
    save_latent_dataset,
)


pytestmark = pytest.mark.slow  # every test here runs the training scripts


def run_script(script: str, *arguments) -> subprocess.CompletedProcess:
    command = [sys.executable, str(example(script)), *map(str, arguments)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def losses(output_dir: Path) -> list[float]:
    lines = (output_dir / "logs" / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


def weights(output_dir: Path, head: str = "diff_head") -> dict[str, torch.Tensor]:
    return {
        f"{component}.{name}": value
        for component in ("transformer", head)
        for name, value in load_file(output_dir / component / "diffusion_pytorch_model.safetensors").items()
    }


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A tiny AudioLDM-format pipeline and an audiofolder of ten clips (two unusable) with captions."""
    root = tmp_path_factory.mktemp("training")
    ImpactPipeline(**tiny_impact_components(audioldm_format=True)).save_pretrained(root / "init")
    clips, rows = root / "clips", []
    clips.mkdir()
    rng = np.random.default_rng(0)
    for index in range(8):
        sampling_rate = 22050 if index % 2 else 16000  # the front-end resamples
        time = np.arange(int(sampling_rate * (1.0 + index % 3))) / sampling_rate
        tone = 0.3 * np.sin(2 * np.pi * (200 + 150 * index) * time) + 0.05 * rng.standard_normal(len(time))
        soundfile.write(clips / f"clip{index}.wav", tone, sampling_rate)
        rows += [f"clip{index}.wav,a tone number {index}", f"clip{index}.wav,a beep {index}"]  # two captions each
    soundfile.write(clips / "silent.wav", np.zeros(16000), 16000)
    (clips / "broken.wav").write_bytes(b"not audio at all")
    rows += ["silent.wav,nothing", "broken.wav,a broken file"]
    (clips / "metadata.csv").write_text("file_name,caption\n" + "\n".join(rows) + "\n")
    return root


COMMON = [
    "--train_batch_size",
    3,
    "--lr_warmup_steps",
    2,
    "--learning_rate",
    1e-3,
    "--ema_decay",
    0.5,
    "--report_to",
    "none",
    "--validation_inference_steps",
    2,
]


def test_both_phases_train_skip_bad_audio_and_save_a_loadable_pipeline(workspace):
    pretrained, text = workspace / "pretrained", workspace / "text"

    result = run_script(
        "train_impact.py",
        "--pipeline",
        workspace / "init",
        "--phase",
        "unconditional",
        "--train_data",
        workspace / "clips",
        "--output_dir",
        pretrained,
        "--max_train_steps",
        4,
        "--ema_decay",
        0.0,
        *COMMON[2:-4],
        "--train_batch_size",
        5,  # batches of five: two epochs, every file read twice
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        "Unusable audio files skipped during training: {'unreadable': 1, 'silent': 1}" in result.stderr
    )  # each file once
    assert len(losses(pretrained)) == 4 and not list(pretrained.glob("checkpoint-*"))  # checkpoints every 1000 steps

    result = run_script(
        "train_impact.py",
        "--pipeline",
        pretrained,
        "--phase",
        "text",
        "--train_data",
        workspace / "clips",
        "--caption_column",
        "caption",
        "--output_dir",
        text,
        "--max_train_steps",
        4,
        "--checkpointing_steps",
        2,
        "--validation_steps",
        2,
        *COMMON,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for step in (2, 4):  # periodic validation renders: a WAV per prompt and a mel-spectrogram figure
        folder = text / "validation" / f"step-{step}"
        assert sorted(p.name for p in folder.iterdir()) == ["0.wav", "1.wav", "mel.png"]
        audio, sampling_rate = soundfile.read(folder / "0.wav")
        assert sampling_rate == 16000 and len(audio) == 163840  # 10.24 s, as the pipeline returns it
    assert "phase `text`, 4 steps" in (text / "README.md").read_text()

    pipe = ImpactPipeline.from_pretrained(text)
    pipe.set_progress_bar_config(disable=True)
    audio = pipe("a beep", num_inference_steps=2, num_diffusion_steps=3, generator=torch.manual_seed(0)).audios
    assert audio.shape == (1, 163840) and np.isfinite(audio).all()
    trained, initial = weights(text), weights(workspace / "init")
    assert any(not torch.equal(trained[name], initial[name]) for name in trained)


def test_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one(workspace):
    arguments = [
        "--pipeline",
        workspace / "init",
        "--phase",
        "text",
        "--train_data",
        workspace / "clips",
        "--checkpointing_steps",
        3,
        "--validation_steps",
        100,
        "--deterministic",
        *COMMON,
    ]
    uninterrupted, interrupted = workspace / "uninterrupted", workspace / "interrupted"
    assert (
        run_script("train_impact.py", *arguments, "--output_dir", uninterrupted, "--max_train_steps", 6).returncode
        == 0
    )
    assert (
        run_script("train_impact.py", *arguments, "--output_dir", interrupted, "--max_train_steps", 3).returncode == 0
    )
    # A crash after step 3: a save that broke off half-way leaves only a temporary folder, which `latest` ignores,
    # and the steps logged after the checkpoint are logged again by the resumed run (not twice).
    (interrupted / ".checkpoint-5.tmp").mkdir()
    with (interrupted / "logs" / "metrics.jsonl").open("a") as metrics:
        metrics.write(json.dumps({"step": 4, "loss": 123.0, "lr": 0.0}) + "\n")
    result = run_script(
        "train_impact.py",
        *arguments,
        "--output_dir",
        interrupted,
        "--max_train_steps",
        6,
        "--resume_from_checkpoint",
        "latest",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resumed from" in result.stdout and "checkpoint-3 at step 3" in result.stdout
    assert losses(interrupted) == losses(uninterrupted)
    resumed, reference = weights(interrupted), weights(uninterrupted)
    assert resumed.keys() == reference.keys()
    assert all(torch.equal(resumed[name], reference[name]) for name in reference)
    assert any(not torch.equal(reference[name], weights(workspace / "init")[name]) for name in reference)


@pytest.mark.parametrize("head", ["diff_head", "energy_head"])
def test_two_processes_train_like_one_process_with_the_same_global_batch(workspace, head):
    """accelerate on two CPU processes (gloo, launched by torchrun): every draw is keyed by the sample's place in the
    global batch, so 2 × 2 samples per step end with the weights of 1 × 4, up to float rounding. The transformer
    has no dropout here (dropout masks depend on how the batch is laid out). The energy head's run distils from a
    teacher (the diffusion-head pipeline), its noise drawn per sample too."""
    pipeline = ImpactPipeline.from_pretrained(workspace / "init")
    config = dict(pipeline.transformer.config)
    without_dropout = ImpactTransformer.from_config({**config, "dropout": 0.0})
    without_dropout.load_state_dict(pipeline.transformer.state_dict())
    pipeline.transformer = without_dropout
    pipeline.save_pretrained(workspace / "init-no-dropout")
    head_arguments = []
    if head == "energy_head":
        energy_head = tiny_impact_components(audioldm_format=True, head="energy")["energy_head"]
        student = ImpactPipeline(
            **{**pipeline.components, "diff_head": None, "head_scheduler": None, "energy_head": energy_head}
        )
        student.save_pretrained(workspace / "energy-no-dropout")
        head_arguments = ["--teacher", workspace / "init-no-dropout", "--distill_projector_width", 16]
    rng, shape = np.random.default_rng(1), (8, 256, 16)
    records = [
        {
            "latent_mean": rng.standard_normal(shape).astype(np.float16),
            "latent_std": np.full(shape, 0.1, np.float16),
            "captions": [f"a tone number {index}", f"a beep {index}"],
        }
        for index in range(8)
    ]
    save_latent_dataset(records, workspace / "captioned-latents")
    arguments = [
        "--pipeline",
        workspace / ("init-no-dropout" if head == "diff_head" else "energy-no-dropout"),
        *head_arguments,
        "--phase",
        "text",
        "--train_latents",
        workspace / "captioned-latents",
        "--max_train_steps",
        3,
        "--checkpointing_steps",
        100,
        "--validation_steps",
        100,
        "--condition_drop_prob",
        0.5,
        "--deterministic",
        *COMMON[2:],  # all but the batch size
    ]
    one_process = subprocess.run(
        [
            sys.executable,
            str(example("train_impact.py")),
            *map(str, arguments),
            "--train_batch_size",
            "4",
            "--output_dir",
            str(workspace / f"one-process-{head}"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert one_process.returncode == 0, one_process.stderr[-3000:]
    run_on_two_cpu_processes(
        example("train_impact.py"),
        *arguments,
        "--train_batch_size",
        2,
        "--output_dir",
        workspace / f"two-processes-{head}",
    )
    two_processes = weights(workspace / f"two-processes-{head}", head)
    one_process = weights(workspace / f"one-process-{head}", head)
    assert two_processes.keys() == one_process.keys()
    # Not the attention key biases: softmax ignores a shift shared by all keys, so their true gradient is 0 and what
    # Adam's normalised step makes of the rounding noise differs by layout (seen: 1e-5 either way, from 0 moved 1e-5).
    compared = [name for name in one_process if not name.endswith("to_k.bias")]
    for name in compared:
        torch.testing.assert_close(two_processes[name], one_process[name], rtol=1e-4, atol=1e-6, msg=name)
    initial = weights(workspace / ("init-no-dropout" if head == "diff_head" else "energy-no-dropout"), head)
    assert all((one_process[name] - initial[name]).abs().max() > 1e-4 for name in compared)  # all of them trained


def test_two_processes_train_the_unconditional_phase_on_audio_with_unusable_files(workspace):
    """The audio path on two CPU processes, one clip each per step (seed 1: in the third and fourth global batches one process draws
    the broken or the silent file while the other draws a clip): the text layers get no gradient in this phase, and
    DistributedDataParallel must have been told so, or the run stops with an error at the second step."""
    result = run_on_two_cpu_processes(
        example("train_impact.py"),
        "--pipeline",
        workspace / "init",
        "--phase",
        "unconditional",
        "--train_data",
        workspace / "clips",
        "--output_dir",
        workspace / "two-processes-bad-files",
        "--max_train_steps",
        5,
        "--train_batch_size",
        1,
        "--report_to",
        "none",
        "--seed",
        1,
        timeout=300,
    )
    assert "Unusable audio files skipped" in result.stderr
    assert [
        line["step"]
        for line in map(
            json.loads, (workspace / "two-processes-bad-files" / "logs" / "metrics.jsonl").read_text().splitlines()
        )
    ] == [1, 2, 3, 4, 5]


@pytest.fixture(scope="module")
def checkpointed_run(workspace) -> tuple[Path, list]:
    """A two-step run on pre-computed latents with a checkpoint after each step, and its arguments."""
    rng, shape = np.random.default_rng(0), (8, 256, 16)
    records = [
        {
            "latent_mean": rng.standard_normal(shape).astype(np.float16),
            "latent_std": np.full(shape, 0.1, np.float16),
            "captions": [],
        }
        for _ in range(4)
    ]
    save_latent_dataset(records, workspace / "random-latents")
    arguments = [
        "--pipeline",
        workspace / "init",
        "--phase",
        "unconditional",
        "--train_latents",
        workspace / "random-latents",
        "--train_batch_size",
        2,
        "--checkpointing_steps",
        1,
        "--report_to",
        "none",
    ]
    output_dir = workspace / "checkpointed"
    result = run_script("train_impact.py", *arguments, "--output_dir", output_dir, "--max_train_steps", 2)
    assert result.returncode == 0, result.stderr[-3000:]
    return output_dir, arguments


def resume_a_copy(checkpointed_run, copy: Path, damage, checkpoint="latest") -> subprocess.CompletedProcess:
    """Resumes a copy of `checkpointed_run`, damaged by `damage(copy)`, to step 3."""
    output_dir, arguments = checkpointed_run
    shutil.copytree(output_dir, copy)
    damage(copy)
    return run_script(
        "train_impact.py",
        *arguments,
        "--output_dir",
        copy,
        "--max_train_steps",
        3,
        "--resume_from_checkpoint",
        checkpoint,
    )


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    ("name", "damage", "reason"),
    [("optimizer.safetensors", truncate, "cannot be read"), ("training_state.json", Path.unlink, "is missing")],
)
def test_resuming_from_latest_skips_a_damaged_checkpoint_naming_the_file(
    checkpointed_run, tmp_path, name, damage, reason
):
    copy = tmp_path / "run"
    result = resume_a_copy(checkpointed_run, copy, lambda folder: damage(folder / "checkpoint-2" / name))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Skipping the damaged {copy / 'checkpoint-2'}: {copy / 'checkpoint-2' / name} {reason}" in result.stderr
    assert f"Resumed from {copy / 'checkpoint-1'} at step 1." in result.stdout
    assert sorted(p.name for p in copy.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2", "checkpoint-3"]


def test_resuming_drops_a_metrics_line_cut_off_by_a_crash(checkpointed_run, tmp_path):
    def cut_off_line(folder):
        with (folder / "logs" / "metrics.jsonl").open("a") as metrics:
            metrics.write('{"step": 3, "lo')

    result = resume_a_copy(checkpointed_run, tmp_path / "run", cut_off_line)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = (tmp_path / "run" / "logs" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3]


def test_a_pickle_in_place_of_any_checkpoint_file_is_refused_without_running_it(checkpointed_run, tmp_path):
    marker = tmp_path / "code-ran"
    for name in checkpoints.CHECKPOINT_FILES:
        folder = shutil.copytree(checkpointed_run[0] / "checkpoint-2", tmp_path / name)
        torch.save(Payload(marker), folder / name)
        with pytest.raises(checkpoints.DamagedCheckpointError, match=re.escape(f"{folder / name} cannot be read")):
            checkpoints.read_checkpoint(folder)
    assert not marker.exists()
    torch.save(Payload(marker), tmp_path / "custom_checkpoint_0.pkl")
    torch.load(tmp_path / "custom_checkpoint_0.pkl", weights_only=False)  # as `accelerator.load_state` read the EMA
    assert marker.exists()  # the payload is live


def test_resuming_unpickles_nothing(checkpointed_run, tmp_path):
    """Pickles in a checkpoint (in place of its files, or as the files accelerate's `load_state` would unpickle) run no
    code: an explicitly named checkpoint of pickles is refused, `latest` falls back to the one before."""
    marker, copy = tmp_path / "code-ran", tmp_path / "run"

    def plant_pickles(folder):
        for name in checkpoints.CHECKPOINT_FILES:
            torch.save(Payload(marker), folder / "checkpoint-2" / name)
        for name in ("custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin", "scheduler.bin"):
            torch.save(Payload(marker), folder / "checkpoint-1" / name)

    explicit = resume_a_copy(checkpointed_run, copy, plant_pickles, checkpoint=copy / "checkpoint-2")
    refused = copy / "checkpoint-2" / "training_state.json"
    assert explicit.returncode != 0
    assert f"--resume_from_checkpoint {copy / 'checkpoint-2'}: {refused} cannot be read" in explicit.stderr
    latest = run_script(
        "train_impact.py",
        *checkpointed_run[1],
        "--output_dir",
        copy,
        "--max_train_steps",
        3,
        "--resume_from_checkpoint",
        "latest",
    )
    assert latest.returncode == 0, latest.stderr[-3000:]
    assert f"Resumed from {copy / 'checkpoint-1'} at step 1." in latest.stdout
    assert not marker.exists()


def test_precomputed_latents_train_and_the_loss_goes_down(workspace):
    latents = workspace / "latents"
    result = run_script(
        "precompute_latents.py",
        "--pipeline",
        workspace / "init",
        "--train_data",
        workspace / "clips",
        "--caption_column",
        "caption",
        "--output_dir",
        latents,
        "--batch_size",
        4,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Saved 8 latents" in result.stdout and "skipped 2 files" in result.stdout
    dataset = load_latent_dataset(latents)
    assert len(dataset) == 8 and dataset[0]["latent_mean"].shape == (8, 256, 16)
    assert sorted(dataset[0]["captions"]) == ["a beep 0", "a tone number 0"]

    output = workspace / "from-latents"
    result = run_script(
        "train_impact.py",
        "--pipeline",
        workspace / "init",
        "--phase",
        "text",
        "--train_latents",
        latents,
        "--output_dir",
        output,
        "--max_train_steps",
        40,
        "--validation_steps",
        1000,
        "--train_batch_size",
        4,
        "--lr_warmup_steps",
        0,
        "--learning_rate",
        2e-3,
        "--report_to",
        "none",
        "--validation_inference_steps",
        2,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    history = losses(output)
    assert len(history) == 40
    assert np.mean(history[-8:]) < 0.5 * np.mean(history[:8]), history


def test_a_non_finite_loss_stops_training_naming_the_step(workspace, tmp_path):
    shape = (8, 256, 16)
    good = {"latent_mean": np.zeros(shape, np.float16), "latent_std": np.ones(shape, np.float16), "captions": ["a"]}
    bad = dict(good, latent_mean=np.full(shape, np.nan, np.float16))
    save_latent_dataset([good, good, bad, bad], tmp_path / "latents")
    result = run_script(
        "train_impact.py",
        "--pipeline",
        workspace / "init",
        "--phase",
        "text",
        "--train_latents",
        tmp_path / "latents",
        "--output_dir",
        tmp_path / "out",
        "--max_train_steps",
        5,
        "--train_batch_size",
        4,
        "--report_to",
        "none",
    )
    assert result.returncode != 0
    assert "The loss is not finite at step 1" in result.stderr and "none was saved yet" in result.stderr


def test_a_missing_column_fails_at_start_listing_the_columns(workspace, tmp_path):
    result = run_script(
        "train_impact.py",
        "--pipeline",
        workspace / "init",
        "--phase",
        "text",
        "--train_data",
        workspace / "clips",
        "--caption_column",
        "text",
        "--output_dir",
        tmp_path / "out",
        "--max_train_steps",
        1,
        "--report_to",
        "none",
    )
    assert result.returncode != 0
    assert "text" in result.stderr and "caption" in result.stderr and "ValueError" in result.stderr


def test_a_pipeline_in_another_audio_format_is_refused(tmp_path, workspace):
    ImpactPipeline(**tiny_impact_components()).save_pretrained(tmp_path / "tiny")
    result = run_script(
        "train_impact.py",
        "--pipeline",
        tmp_path / "tiny",
        "--phase",
        "unconditional",
        "--train_data",
        workspace / "clips",
        "--output_dir",
        tmp_path / "out",
        "--max_train_steps",
        1,
        "--report_to",
        "none",
    )
    assert result.returncode != 0 and "AudioLDM's front-end" in result.stderr


def save_component_folders(root: Path) -> None:
    """Tiny AudioLDM-format component folders, as Hub ids would hold them: `audioldm/{vae,vocoder}`, `t5`, `clap`."""
    components = tiny_impact_components(audioldm_format=True)
    components["vae"].save_pretrained(root / "audioldm" / "vae")
    components["vocoder"].save_pretrained(root / "audioldm" / "vocoder")
    for name, model, tokenizer in (
        ("t5", "text_encoder", "tokenizer"),
        ("clap", "clap_text_encoder", "clap_tokenizer"),
    ):
        components[model].save_pretrained(root / name)
        components[tokenizer].save_pretrained(root / name)


def test_create_impact_pipeline_assembles_components_from_folders(tmp_path):
    """The starting point of training, from component folders (as Hub ids would be): AudioLDM, a text encoder, CLAP."""
    save_component_folders(tmp_path)
    command = [
        "create_impact_pipeline.py",
        "--output_dir",
        tmp_path / "init",
        "--audioldm",
        tmp_path / "audioldm",
        "--text_encoder",
        tmp_path / "t5",
        "--clap",
        tmp_path / "clap",
        "--hidden_size",
        32,
        "--num_layers",
        1,
        "--num_attention_heads",
        2,
        "--head_width",
        48,
        "--head_depth",
        2,
    ]
    result = run_script(*command)
    assert result.returncode == 0, result.stderr[-3000:]
    pipe = ImpactPipeline.from_pretrained(tmp_path / "init")
    # The initial weights follow --seed (default 0): the same seed gives the same pipeline, another seed another one.
    for seed, same in ((0, True), (1, False)):
        again = run_script(*command[:2], tmp_path / f"seed{seed}", *command[3:], "--seed", seed)
        assert again.returncode == 0, again.stderr[-3000:]
        other = ImpactPipeline.from_pretrained(tmp_path / f"seed{seed}")
        for model in ("transformer", "diff_head"):
            weights, other_weights = getattr(pipe, model).state_dict(), getattr(other, model).state_dict()
            assert all(torch.equal(weights[name], other_weights[name]) for name in weights) == same, (seed, model)
    config = pipe.transformer.config
    assert (config.latent_channels, config.latent_length, config.latent_width) == (8, 256, 16)
    assert (config.hidden_size, config.num_encoder_layers, config.text_embed_dim, config.pooled_text_embed_dim) == (
        32,
        1,
        16,
        8,
    )
    assert (pipe.diff_head.config.in_channels, pipe.diff_head.config.model_channels) == (128, 48)
    pipe.set_progress_bar_config(disable=True)
    assert pipe("a dog", num_inference_steps=1, num_diffusion_steps=2).audios.shape == (1, 163840)


def test_create_impact_pipeline_can_pool_the_text_encoder_instead_of_clap(tmp_path):
    save_component_folders(tmp_path)
    command = [
        "create_impact_pipeline.py",
        "--output_dir",
        tmp_path / "init",
        "--audioldm",
        tmp_path / "audioldm",
        "--text_encoder",
        tmp_path / "t5",
        "--hidden_size",
        32,
        "--num_layers",
        1,
        "--num_attention_heads",
        2,
        "--head_width",
        48,
        "--pooled_from_text_encoder",
    ]
    result = run_script(*command)
    assert result.returncode == 0, result.stderr[-3000:]
    pipe = ImpactPipeline.from_pretrained(tmp_path / "init")
    assert pipe.config.pooled_text_embedding == "text_encoder_mean" and pipe.clap_text_encoder is None
    assert pipe.transformer.config.pooled_text_embed_dim == pipe.text_encoder.config.d_model == 16
    refused = run_script(*command, "--clap", tmp_path / "clap")
    assert refused.returncode == 2 and "at most one of --clap and --pooled_from_text_encoder" in refused.stderr


def test_precomputed_text_embeddings_equal_live_encoding_and_train(workspace):
    latents = workspace / "latents-with-text"
    result = run_script(
        "precompute_latents.py",
        "--pipeline",
        workspace / "init",
        "--train_data",
        workspace / "clips",
        "--caption_column",
        "caption",
        "--output_dir",
        latents,
        "--batch_size",
        4,
        "--text_embeddings",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    dataset = LatentCaptionDataset(load_latent_dataset(latents))
    batch = collate_latent_captions([dataset[i] for i in range(4)], np.random.default_rng(3))
    # The chosen captions' stored embeddings are what the pipeline's text encoders give for them (float16 storage).
    pipe = ImpactPipeline.from_pretrained(workspace / "init")
    embeds, mask, pooled, *_ = pipe.encode_prompt(
        batch["captions"], torch.device("cpu"), do_classifier_free_guidance=False
    )
    assert torch.equal(batch["prompt_attention_mask"], mask)
    torch.testing.assert_close(batch["prompt_embeds"][mask], embeds[mask], rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(batch["pooled_prompt_embeds"], pooled, rtol=2e-3, atol=2e-3)
    assert len(set(batch["captions"])) > 1

    result = run_script(
        "train_impact.py",
        "--pipeline",
        workspace / "init",
        "--phase",
        "text",
        "--train_latents",
        latents,
        "--output_dir",
        workspace / "from-text-latents",
        "--max_train_steps",
        3,
        "--train_batch_size",
        4,
        "--report_to",
        "none",
        "--validation_steps",
        1000,
        "--validation_inference_steps",
        2,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(losses(workspace / "from-text-latents")) == 3


def two_step_text_phase(workspace: Path) -> list:
    """train_impact.py arguments for two text-phase steps on the workspace clips (seed 3, no validation render)."""
    return [
        "--phase",
        "text",
        "--train_data",
        workspace / "clips",
        "--caption_column",
        "caption",
        "--max_train_steps",
        2,
        *COMMON,
        "--validation_steps",
        1000,
        "--seed",
        3,
    ]


def test_text_token_dropout_trains_on_the_pooled_embedding_alone_and_is_refused_where_meaningless(workspace):
    """`--text_token_dropout` masks out whole samples' token states (the pooled CLAP slot stays): it changes training,
    and is refused for the unconditional phase and for a transformer without a pooled embedding."""
    text = two_step_text_phase(workspace)
    plain, dropout = workspace / "tokens-kept", workspace / "tokens-dropped"
    for output_dir, extra in ((plain, []), (dropout, ["--text_token_dropout", 0.5])):
        result = run_script(
            "train_impact.py", "--pipeline", workspace / "init", "--output_dir", output_dir, *text, *extra
        )
        assert result.returncode == 0, result.stderr[-3000:]
    plain_weights, dropout_weights = weights(plain), weights(dropout)
    assert any(not torch.equal(plain_weights[name], dropout_weights[name]) for name in plain_weights)

    refused = run_script(
        "train_impact.py",
        "--pipeline",
        workspace / "init",
        "--output_dir",
        workspace / "refused",
        "--phase",
        "unconditional",
        "--train_data",
        workspace / "clips",
        "--max_train_steps",
        2,
        "--text_token_dropout",
        0.5,
    )
    assert refused.returncode == 2 and "--text_token_dropout applies to the text phase only" in refused.stderr
    out_of_range = run_script(
        "train_impact.py",
        "--pipeline",
        workspace / "init",
        "--output_dir",
        workspace / "refused",
        *text,
        "--text_token_dropout",
        1.0,
    )
    assert out_of_range.returncode == 2 and "--text_token_dropout must be in [0, 1)" in out_of_range.stderr
    ImpactPipeline(**tiny_impact_components(audioldm_format=True, with_clap=False)).save_pretrained(
        workspace / "no-pooled"
    )
    no_pooled = run_script(
        "train_impact.py",
        "--pipeline",
        workspace / "no-pooled",
        "--output_dir",
        workspace / "refused",
        *text,
        "--text_token_dropout",
        0.5,
    )
    assert no_pooled.returncode != 0 and "needs a transformer with a pooled text embedding" in no_pooled.stderr


def test_pooled_text_noise_perturbs_the_pooled_embedding_and_is_refused_where_meaningless(workspace):
    """`--pooled_text_noise` adds Gaussian noise to the pooled embedding and renormalises it: it changes training, and
    is refused outside the text phase, for a negative value and for a transformer without a pooled embedding."""
    text = two_step_text_phase(workspace)
    plain, noisy = workspace / "pooled-plain", workspace / "pooled-noisy"
    for output_dir, extra in ((plain, []), (noisy, ["--pooled_text_noise", 0.05])):
        result = run_script(
            "train_impact.py", "--pipeline", workspace / "init", "--output_dir", output_dir, *text, *extra
        )
        assert result.returncode == 0, result.stderr[-3000:]
    plain_weights, noisy_weights = weights(plain), weights(noisy)
    assert any(not torch.equal(plain_weights[name], noisy_weights[name]) for name in plain_weights)

    base = ["train_impact.py", "--pipeline", workspace / "init", "--output_dir", workspace / "refused"]
    unconditional = run_script(
        *base,
        "--phase",
        "unconditional",
        "--train_data",
        workspace / "clips",
        "--max_train_steps",
        2,
        "--pooled_text_noise",
        0.05,
    )
    assert (
        unconditional.returncode == 2 and "--pooled_text_noise applies to the text phase only" in unconditional.stderr
    )
    negative = run_script(*base, *text, "--pooled_text_noise", -0.1)
    assert negative.returncode == 2 and "--pooled_text_noise must be a finite number ≥ 0" in negative.stderr
    ImpactPipeline(**tiny_impact_components(audioldm_format=True, with_clap=False)).save_pretrained(
        workspace / "no-pooled-noise"
    )
    no_pooled = run_script(
        "train_impact.py",
        "--pipeline",
        workspace / "no-pooled-noise",
        "--output_dir",
        workspace / "refused",
        *text,
        "--pooled_text_noise",
        0.05,
    )
    assert no_pooled.returncode != 0 and "--pooled_text_noise needs a transformer with a pooled" in no_pooled.stderr


def test_inpainting_batches_change_training_and_are_refused_where_meaningless(workspace):
    """`--inpainting_prob 1` makes every batch an inpainting batch (gaps holding another sample's tokens and
    caption): it changes training; it is refused outside the text phase and for values out of range."""
    text = two_step_text_phase(workspace)
    plain, inpainting = workspace / "inpainting-plain", workspace / "inpainting"
    for output_dir, extra in ((plain, []), (inpainting, ["--inpainting_prob", 1.0, "--inpainting_gap_s", 0.1, 0.3])):
        result = run_script(
            "train_impact.py", "--pipeline", workspace / "init", "--output_dir", output_dir, *text, *extra
        )
        assert result.returncode == 0, result.stderr[-3000:]
    plain_weights, inpainting_weights = weights(plain), weights(inpainting)
    assert any(not torch.equal(plain_weights[name], inpainting_weights[name]) for name in plain_weights)

    base = ["train_impact.py", "--pipeline", workspace / "init", "--output_dir", workspace / "refused"]
    unconditional = run_script(
        *base,
        "--phase",
        "unconditional",
        "--train_data",
        workspace / "clips",
        "--max_train_steps",
        2,
        "--inpainting_prob",
        0.5,
    )
    assert unconditional.returncode == 2 and "--inpainting_prob applies to the text phase only" in unconditional.stderr
    too_likely = run_script(*base, *text, "--inpainting_prob", 1.5)
    assert too_likely.returncode == 2 and "--inpainting_prob must be in [0, 1], got 1.5" in too_likely.stderr
    reversed_gap = run_script(*base, *text, "--inpainting_prob", 0.5, "--inpainting_gap_s", 2, 1)
    assert (
        reversed_gap.returncode == 2 and "--inpainting_gap_s needs 0 < MIN ≤ MAX, got 2.0 1.0" in reversed_gap.stderr
    )
    own_alone = run_script(*base, *text, "--inpainting_own_prob", 0.5)
    assert own_alone.returncode == 2 and "--inpainting_own_prob needs --inpainting_prob" in own_alone.stderr
    own_too_likely = run_script(*base, *text, "--inpainting_prob", 0.5, "--inpainting_own_prob", -0.1)
    assert (
        own_too_likely.returncode == 2 and "--inpainting_own_prob must be in [0, 1], got -0.1" in own_too_likely.stderr
    )


# ------------------------------------------------------------------------------ AudioDEAR: energy head, distillation
def energy_weights(output_dir: Path) -> dict[str, torch.Tensor]:
    return {
        f"{component}.{name}": value
        for component in ("transformer", "energy_head")
        for name, value in load_file(output_dir / component / "diffusion_pytorch_model.safetensors").items()
    }


@pytest.fixture(scope="module")
def energy_student(workspace) -> Path:
    """An energy-head student of the tiny pipeline, assembled by create_impact_pipeline.py --teacher."""
    student = workspace / "energy-init"
    result = run_script(
        "create_impact_pipeline.py",
        "--teacher",
        workspace / "init",
        "--head",
        "energy",
        "--head_width",
        32,
        "--head_depth",
        2,
        "--noise_channels",
        8,
        "--output_dir",
        student,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return student


def test_create_impact_pipeline_assembles_an_energy_student_of_a_teacher(workspace, energy_student):
    teacher, student = (
        ImpactPipeline.from_pretrained(workspace / "init"),
        ImpactPipeline.from_pretrained(energy_student),
    )
    assert student.head_type == "energy" and student.diff_head is None and student.head_scheduler is None
    config = student.energy_head.config
    assert (config.out_channels, config.model_channels, config.num_res_blocks, config.noise_channels) == (
        128,
        32,
        2,
        8,
    )
    assert config.condition_channels == teacher.transformer.config.hidden_size
    teacher_weights, student_weights = teacher.transformer.state_dict(), student.transformer.state_dict()
    assert all(torch.equal(teacher_weights[name], student_weights[name]) for name in teacher_weights)
    assert type(student.vae) is type(teacher.vae) and type(student.text_encoder) is type(teacher.text_encoder)
    student.set_progress_bar_config(disable=True)
    assert student("a tone", num_inference_steps=2).audios.shape == (1, 163840)
    for extra, message in (
        (["--teacher", workspace / "init", "--audioldm", "x"], "--audioldm come\\(s\\) from the --teacher pipeline"),
        ([], "Pass --audioldm and --text_encoder \\(a new pipeline\\), or --teacher"),
        (["--teacher", workspace / "init", "--noise_channels", 8], "--noise_channels sets the energy head's noise"),
    ):
        result = run_script("create_impact_pipeline.py", "--output_dir", workspace / "refused", *extra)
        assert result.returncode != 0 and re.search(message, result.stderr), result.stderr[-2000:]


ENERGY_TRAINING = [
    "--phase",
    "text",
    "--head",
    "energy",
    "--energy_samples",
    3,
    "--distill_weight",
    0.7,
    "--distill_projector_width",
    16,
    "--checkpointing_steps",
    2,
    "--validation_steps",
    100,
    "--deterministic",
    *COMMON,
]


def test_an_energy_student_trains_with_distillation_and_resumes_exactly(workspace, energy_student):
    arguments = ["--pipeline", energy_student, "--teacher", workspace / "init", "--train_data", workspace / "clips"]
    uninterrupted, interrupted = workspace / "energy-uninterrupted", workspace / "energy-interrupted"
    result = run_script(
        "train_impact.py", *arguments, *ENERGY_TRAINING, "--output_dir", uninterrupted, "--max_train_steps", 4
    )
    assert result.returncode == 0, result.stderr[-3000:]
    logged = [json.loads(line) for line in (uninterrupted / "logs" / "metrics.jsonl").read_text().splitlines()]
    for line in logged:  # the logged loss is the energy score plus the weighted distillation loss
        assert line["loss"] == pytest.approx(line["energy_loss"] + 0.7 * line["distill_loss"], rel=1e-5)
        assert 0 < line["distill_loss"] < 2  # 1 − cosine
    assert sorted(path.name for path in (uninterrupted / "checkpoint-2").iterdir()) == sorted(
        checkpoints.checkpoint_files(("transformer", "energy_head", "projector"))
    )
    trained = ImpactPipeline.from_pretrained(uninterrupted)
    assert trained.head_type == "energy" and not (uninterrupted / "projector").exists()  # the projector is not kept
    card = (uninterrupted / "README.md").read_text()
    assert (
        "Energy head: energy score of 3 samples per token" in card and f"distilled from `{workspace / 'init'}`" in card
    )
    assert "one-step energy-scoring head" in card

    result = run_script(
        "train_impact.py", *arguments, *ENERGY_TRAINING, "--output_dir", interrupted, "--max_train_steps", 2
    )
    assert result.returncode == 0, result.stderr[-3000:]
    result = run_script(
        "train_impact.py",
        *arguments,
        *ENERGY_TRAINING,
        "--output_dir",
        interrupted,
        "--max_train_steps",
        4,
        "--resume_from_checkpoint",
        "latest",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert losses(interrupted) == losses(uninterrupted)
    resumed, reference = energy_weights(interrupted), energy_weights(uninterrupted)
    assert all(torch.equal(resumed[name], reference[name]) for name in reference)
    assert any(not torch.equal(reference[name], energy_weights(energy_student)[name]) for name in reference)


def test_energy_training_options_are_refused_where_they_do_not_apply(workspace, energy_student, tmp_path):
    base = ["--phase", "text", "--train_data", workspace / "clips", "--max_train_steps", 1, *COMMON]
    other_layout = tmp_path / "other-layout"
    components = tiny_impact_components(audioldm_format=True)
    components["transformer"] = ImpactTransformer(**{**components["transformer"].config, "patch_size": 8})
    components["diff_head"] = None
    components["head_scheduler"] = None
    components["energy_head"] = tiny_impact_components(audioldm_format=True, head="energy")["energy_head"]
    ImpactPipeline(**components).save_pretrained(other_layout)
    cases = [
        (
            ["--pipeline", workspace / "init", "--head", "energy"],
            "has a diffusion head. To train an energy-head student",
        ),
        (["--pipeline", workspace / "init", "--energy_samples", 4], "--energy_samples do\\(es\\) not apply"),
        (["--pipeline", energy_student, "--diffusion_batch_mul", 4], "--diffusion_batch_mul do\\(es\\) not apply"),
        (
            ["--pipeline", energy_student, "--distill_weight", 1.0],
            "--distill_weight set the distillation from a teacher",
        ),
        (["--pipeline", energy_student, "--energy_samples", 1], "--energy_samples must be at least 2"),
        (
            ["--pipeline", energy_student, "--teacher", other_layout],
            "does not read the same tokens and text condition.*patch_size 4 \\(student\\) vs 8 \\(teacher\\)",
        ),
        (
            ["--pipeline", energy_student, "--teacher", workspace / "init", "--distill_layer", 2],
            "--distill_layer must be a decoder block of the student, 1 to 1; got 2",
        ),
    ]
    for extra, message in cases:
        result = run_script("train_impact.py", *base, *extra, "--output_dir", tmp_path / "refused")
        assert result.returncode != 0 and re.search(message, result.stderr), (extra, result.stderr[-2000:])


# ------------------------------------------------------------------------------------------------- LoRA fine-tuning
@pytest.mark.parametrize("adapted", [["transformer"], ["diff_head", "transformer"]])
def test_lora_training_writes_only_an_adapter_that_changes_the_base_model_and_resumes_exactly(workspace, adapted):
    """--lora_rank trains an adapter on the frozen base (with --lora_head on the diffusion head too): the output folder
    holds the adapter, its card and the usual logs, not a pipeline; the adapter loads into the base pipeline and
    changes its output; a resumed run ends with the same adapter as an uninterrupted one."""
    arguments = ["--lora_head"] * ("diff_head" in adapted) + [
        "--pipeline",
        workspace / "init",
        "--phase",
        "text",
        "--train_data",
        workspace / "clips",
        "--caption_column",
        "caption",
        "--lora_rank",
        4,
        "--lora_trigger",
        "a bell ringing",
        "--checkpointing_steps",
        2,
        "--validation_steps",
        100,
        "--deterministic",
        *COMMON,
    ]
    whole, resumed = workspace / f"lora-whole-{len(adapted)}", workspace / f"lora-resumed-{len(adapted)}"
    result = run_script("train_impact.py", *arguments, "--output_dir", whole, "--max_train_steps", 4)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (whole / "pytorch_lora_weights.safetensors").is_file() and (whole / "README.md").is_file()
    assert not (whole / "transformer").exists() and not (whole / "model_index.json").exists()
    card = (whole / "README.md").read_text()
    assert "a bell ringing" in card and str(workspace / "init") in card and "rank 4" in card
    adapter = load_file(whole / "pytorch_lora_weights.safetensors")
    assert adapter and all("lora" in key for key in adapter)
    assert sorted({key.split(".")[0] for key in adapter}) == adapted
    for component in adapted:  # B moved off zero in each adapted component
        assert any(
            value.abs().sum() > 0 for key, value in adapter.items() if key.startswith(component) and "lora_B" in key
        )

    base = ImpactPipeline.from_pretrained(workspace / "init")
    base.set_progress_bar_config(disable=True)
    call = {"num_inference_steps": 2, "num_diffusion_steps": 3, "output_type": "latent"}
    before = base("a bell ringing", generator=torch.Generator().manual_seed(0), **call).audios
    base.load_lora_weights(whole)
    after = base("a bell ringing", generator=torch.Generator().manual_seed(0), **call).audios
    assert not torch.equal(before, after)

    assert run_script("train_impact.py", *arguments, "--output_dir", resumed, "--max_train_steps", 2).returncode == 0
    result = run_script(
        "train_impact.py",
        *arguments,
        "--output_dir",
        resumed,
        "--max_train_steps",
        4,
        "--resume_from_checkpoint",
        "latest",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    resumed_adapter = load_file(resumed / "pytorch_lora_weights.safetensors")
    assert all(torch.equal(resumed_adapter[key], adapter[key]) for key in adapter)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--lora_rank", 0], "--lora_rank must be a positive integer"),
        (["--lora_alpha", 8], "--lora_alpha configure a LoRA adapter: pass --lora_rank too"),
        (["--lora_rank", 4, "--phase", "unconditional"], "--lora_rank fine-tunes a trained model"),
        (["--lora_head"], "--lora_head configure a LoRA adapter: pass --lora_rank too"),
        (["--lora_rank", 4, "--lora_head_target", "cond_embed"], "--lora_head_target chooses the head's layers"),
    ],
)
def test_lora_options_are_refused_where_meaningless(workspace, extra, message):
    arguments = ["--pipeline", workspace / "init", "--output_dir", workspace / "refused", "--max_train_steps", 2]
    if "--phase" not in extra:
        arguments += ["--phase", "text"]
    result = run_script("train_impact.py", *arguments, "--train_data", workspace / "clips", *extra)
    assert result.returncode == 2 and message in result.stderr


def test_a_pipeline_whose_head_sampler_clips_trains_on_the_same_noise_schedule(workspace):
    """The embedded default model samples with DDPM and x̂₀ clipped: fine-tuning it (e.g. --lora_rank) trains on the
    sampler's noise schedule; the clipping is a sampling-time choice and does not stop training."""
    from diffusers import DDPMScheduler

    pipeline = ImpactPipeline.from_pretrained(workspace / "init")
    clipped = DDPMScheduler.from_config(
        pipeline.head_scheduler.config, variance_type="learned_range", clip_sample=True, clip_sample_range=8.0
    )
    pipeline.register_modules(head_scheduler=clipped)
    pipeline.save_pretrained(workspace / "clipped-sampler")
    result = run_script(
        "train_impact.py",
        "--pipeline",
        workspace / "clipped-sampler",
        "--output_dir",
        workspace / "clipped-sampler-lora",
        "--phase",
        "text",
        "--train_data",
        workspace / "clips",
        "--caption_column",
        "caption",
        "--max_train_steps",
        1,
        "--lora_rank",
        2,
        "--validation_steps",
        100,
        *COMMON,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (workspace / "clipped-sampler-lora" / "pytorch_lora_weights.safetensors").is_file()
