#!/usr/bin/env python
# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""Train IMPACT with 🤗 Accelerate (paper §3.1, §4.2): unconditional pre-training, then text-conditional training.

Each run reads an `ImpactPipeline` folder (its VAE, vocoder and text encoders stay frozen; the transformer and the
diffusion head train) and writes one, so the phases chain:

    accelerate launch examples/training/train_impact.py --pipeline ./impact-init-mar --phase unconditional \
        --train_data ./audioset_clips --output_dir ./impact-pretrained
    accelerate launch examples/training/train_impact.py --pipeline ./impact-pretrained --phase text \
        --train_data ./audiocaps --caption_column caption --output_dir ./impact-text

`--train_data` is an audio dataset (audiofolder, folder of files, `save_to_disk` folder or Hub id); `--train_latents`
is the output of `examples/training/precompute_latents.py` instead (the VAE then does not run during training).

Every random draw of a batch (data order, crops, captions, masks, timesteps, noise, dropout) derives from `--seed`
and the batch counter, so `--resume_from_checkpoint latest` continues exactly as an uninterrupted run would.
`--deterministic` also fixes the order of the kernels' sums, so that two runs with the same seed give the same weights.
A sample's draws derive from its position in the global batch, and the mask ratio is drawn once per global batch, so
N processes of `--train_batch_size` B train like one process of N·B (gradients are averaged over the processes), up
to float rounding and for a model without dropout (dropout masks depend on how the batch is laid out):

    ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 examples/training/train_impact.py ...   # two CPU processes (gloo)

A checkpoint holds safetensors and JSON files only: resuming runs no code from it (nothing is unpickled). `latest`
skips damaged checkpoints (a file missing or cut short), saying which file, and resumes from the newest intact one.

A pipeline with AudioDEAR's one-step energy head (`ImpactEnergyHead`, assembled from a diffusion-trained teacher by
`create_impact_pipeline.py --teacher`) trains with the energy score of `--energy_samples` head samples per masked
token and, with `--teacher`, representation distillation: the student's hidden vectors, through a projector trained
alongside (and not saved in the pipeline), are aligned with the frozen teacher's for the same masked input
(`--distill_weight`, `--distill_layer`, `--distill_loss`):

    accelerate launch examples/training/train_impact.py --pipeline ./impact-energy-init --head energy --phase text \
        --teacher ./impact-text --distill_weight 0.5 --train_data ./audiocaps --output_dir ./impact-energy

With `--lora_rank R` (text phase) only a LoRA adapter on the transformer's attention projections trains (`--lora_target`
for other linear layers; `--lora_head` adapts the diffusion head too); the base weights stay frozen, checkpoints and
exact resume work as above, and
`--output_dir` gets the adapter (`pytorch_lora_weights.safetensors`, with the base model's fingerprint) and its card
instead of a pipeline: load it with `pipe.load_lora_weights(output_dir)` or `impact-generate --lora output_dir`.

    accelerate launch examples/training/train_impact.py --pipeline ./impact-text --phase text --lora_rank 8 \
        --train_data ./my_sounds --caption_column caption --lora_trigger "my sound" --output_dir ./my-sound-lora
"""

import argparse
import contextlib
import json
import logging
import math
import os
from collections import Counter
from pathlib import Path

import soundfile
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from diffusers.utils.torch_utils import randn_tensor
from tqdm.auto import tqdm

from diffusers_impact import ImpactDiffHeadScheduler, ImpactPipeline
from diffusers_impact.audio import HOP_LENGTH, N_MELS, SAMPLING_RATE, waveform_to_latents
from diffusers_impact.loaders.lora_pipeline_impact import (
    DEFAULT_HEAD_LORA_TARGET_MODULES,
    DEFAULT_LORA_TARGET_MODULES,
    base_model_fingerprint,
)
from diffusers_impact.models import vocoder_front_end
from diffusers_impact.training.checkpoints import (
    checkpoint_contents,
    checkpoints_newest_first,
    named_trained_parameters,
    read_resume_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)
from diffusers_impact.training.data import (
    AudioCaptionDataset,
    LatentCaptionDataset,
    batch_generators,
    collate_audio_captions,
    collate_latent_captions,
    epoch_batches,
    load_audio_dataset,
    load_latent_dataset,
)
from diffusers_impact.training.losses import (
    DISTILLATION_LOSSES,
    distillation_projector,
    masked_energy_loss,
    masked_generative_loss,
    sample_mask_ratio,
    splice_inpainting_gaps,
    uniform_per_sample,
)
from diffusers_impact.visualization import save_mel_spectrograms_png


logger = get_logger(__name__)
# Frozen while the transformer and the head train.
FROZEN_COMPONENTS = ("vae", "vocoder", "text_encoder", "clap_text_encoder")
# The pipeline attribute of each kind of head (`ImpactPipeline.head_type`).
HEAD_ATTRIBUTES = {"diffusion": "diff_head", "energy": "energy_head"}
# Options of one kind of head only, with their defaults (`None` in the parser, so that passing one to the other kind
# of head is an error rather than ignored).
DIFFUSION_OPTIONS = {"diffusion_batch_mul": 4}
ENERGY_OPTIONS = {"energy_samples": 2, "energy_alpha": 1.0, "energy_repulsion": 1.0}
LORA_OPTIONS = ("lora_alpha", "lora_target", "lora_head", "lora_head_target", "lora_trigger")
DISTILLATION_OPTIONS = {
    "distill_weight": 0.5,
    "distill_layer": None,
    "distill_loss": "cosine",
    "distill_projector_width": 2048,
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", required=True, help="ImpactPipeline folder or Hub id with the initial weights.")
    parser.add_argument("--phase", required=True, choices=["unconditional", "text"], help="Training phase (§3.1).")
    parser.add_argument("--output_dir", required=True, help="Where checkpoints, logs and the final pipeline go.")
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument(
        "--train_data", help="Audio dataset: audiofolder, folder of audio files, saved dataset or Hub id."
    )
    data.add_argument(
        "--train_latents", help="Dataset of pre-computed latents (examples/training/precompute_latents.py)."
    )
    parser.add_argument("--split", default="train")
    parser.add_argument("--audio_column", default="audio")
    parser.add_argument("--caption_column", default="caption", help="Caption column (text phase).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train_batch_size", type=int, default=32, help="Per device.")
    parser.add_argument("--max_train_steps", type=int, required=True, help="Optimizer steps.")
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1)
    parser.add_argument("--learning_rate", type=float, default=5e-5, help="Paper §4.2: AdamW, 5e-5.")
    parser.add_argument("--lr_scheduler", default="constant_with_warmup")
    parser.add_argument("--lr_warmup_steps", type=int, default=500)
    parser.add_argument("--adam_beta1", type=float, default=0.9)
    parser.add_argument("--adam_beta2", type=float, default=0.95, help="MAR's β₂.")
    parser.add_argument("--weight_decay", type=float, default=0.02, help="MAR's; not on norms, biases or the head.")
    parser.add_argument("--max_grad_norm", type=float, default=3.0, help="MAR's gradient clipping.")
    parser.add_argument("--ema_decay", type=float, default=0.9999, help="MAR's EMA rate; the EMA weights are saved.")
    parser.add_argument("--ema_warmup", action="store_true", help="Ramp the EMA decay up (useful for short runs).")
    parser.add_argument("--min_mask_ratio", type=float, default=0.7, help="q of the truncated-normal mask ratio.")
    parser.add_argument("--mask_ratio", type=float, default=None, help="A fixed mask ratio instead.")
    parser.add_argument("--condition_drop_prob", type=float, default=0.1, help="Null-condition rate (text phase).")
    parser.add_argument(
        "--text_token_dropout",
        type=float,
        default=0.0,
        help="Text phase, models with a pooled text embedding: rate at which a sample keeps only its pooled embedding "
        "(its token states are masked out), so that the model learns to generate from the pooled vector alone.",
    )
    parser.add_argument(
        "--pooled_text_noise",
        type=float,
        default=0.0,
        help="Text phase, models with a pooled text embedding: standard deviation of Gaussian noise added to each "
        "dimension of the pooled embedding, which is then renormalised to unit length (pooled embeddings are unit "
        "vectors), so that nearby sentence vectors (paraphrases) map to the same sound.",
    )
    parser.add_argument(
        "--inpainting_prob",
        type=float,
        default=0.0,
        help="Text phase: rate of batches that teach inpainting with another sound: each sample keeps its tokens "
        "around a gap (--inpainting_gap_s) that holds the beginning of another sample and takes that sample's caption; "
        "only the gap's tokens are masked. The other sample comes from the same process's batch, so with several "
        "processes these batches differ from one process's.",
    )
    parser.add_argument(
        "--inpainting_own_prob",
        type=float,
        default=0.0,
        help="Share of the samples of an --inpainting_prob batch whose gap keeps their own tokens and caption (the "
        "same sound on both sides of each boundary, as in a continuation), drawn per sample.",
    )
    parser.add_argument(
        "--inpainting_gap_s",
        type=float,
        nargs=2,
        default=[0.5, 3.0],
        metavar=("MIN", "MAX"),
        help="Gap length range in seconds for --inpainting_prob (drawn per batch, in whole token columns).",
    )
    parser.add_argument(
        "--diffusion_batch_mul", type=int, default=None, help="Diffusion head: noise draws per masked token (MAR: 4)."
    )
    energy = parser.add_argument_group("one-step energy head (AudioDEAR)")
    energy.add_argument(
        "--head",
        choices=sorted(HEAD_ATTRIBUTES),
        default=None,
        help="The head to train; the --pipeline must have it (default: the pipeline's).",
    )
    energy.add_argument("--energy_samples", type=int, default=None, help="Head samples m per masked token (EAR: 2).")
    energy.add_argument("--energy_alpha", type=float, default=None, help="Energy-score exponent α in (0, 2) (1).")
    energy.add_argument(
        "--energy_repulsion", type=float, default=None, help="λ, weight of the samples' repulsion term (1)."
    )
    energy.add_argument(
        "--teacher",
        default=None,
        help="Diffusion-trained ImpactPipeline (folder or Hub id) whose transformer's hidden vectors the student's are "
        "aligned with (representation distillation); frozen.",
    )
    energy.add_argument("--distill_weight", type=float, default=None, help="Weight of the distillation loss (0.5).")
    energy.add_argument(
        "--distill_layer",
        type=int,
        default=None,
        help="Student decoder block (1-based) whose output is aligned (default: the transformer's output z).",
    )
    energy.add_argument(
        "--distill_loss", choices=DISTILLATION_LOSSES, default=None, help="1 − cosine (REPA; default) or MSE."
    )
    energy.add_argument(
        "--distill_projector_width", type=int, default=None, help="Width of the projector MLP (REPA: 2048)."
    )
    lora = parser.add_argument_group("LoRA fine-tuning (text phase): only an adapter on the transformer trains")
    lora.add_argument(
        "--lora_rank",
        type=int,
        default=None,
        help="Train a LoRA adapter of this rank instead of the weights: the transformer and the head stay frozen, and "
        "--output_dir gets pytorch_lora_weights.safetensors and its card (load with pipe.load_lora_weights).",
    )
    lora.add_argument("--lora_alpha", type=float, default=None, help="LoRA α (default: the rank, a scale of 1).")
    lora.add_argument(
        "--lora_target",
        nargs="+",
        default=None,
        help=f"Linear layers of the transformer the adapter targets (default: {' '.join(DEFAULT_LORA_TARGET_MODULES)}).",
    )
    lora.add_argument(
        "--lora_head",
        action="store_const",
        const=True,
        default=None,
        help="Adapt the diffusion head too (same rank and α), for sounds whose tokens the frozen head cannot sample.",
    )
    lora.add_argument(
        "--lora_head_target",
        nargs="+",
        default=None,
        help=f"With --lora_head: the head's linear layers (default: {' '.join(DEFAULT_HEAD_LORA_TARGET_MODULES)}).",
    )
    lora.add_argument(
        "--lora_trigger", default=None, help="The caption that calls the new sound, for the adapter's card."
    )
    parser.add_argument("--gradient_checkpointing", action="store_true")
    parser.add_argument(
        "--deterministic",
        action="store_true",
        help="Deterministic kernels only (torch.use_deterministic_algorithms). Without it, some kernels sum in a varying "
        "order on 2+ CPU threads, so two runs with the same seed drift apart.",
    )
    parser.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default=None)
    parser.add_argument("--dataloader_num_workers", type=int, default=0)
    parser.add_argument("--checkpointing_steps", type=int, default=1000)
    parser.add_argument("--checkpoints_total_limit", type=int, default=None)
    parser.add_argument(
        "--resume_from_checkpoint",
        default=None,
        help="A checkpoint folder, or 'latest': the newest intact checkpoint-* folder of --output_dir.",
    )
    parser.add_argument("--validation_prompts", nargs="*", default=["a dog barking", "rain falling on a roof"])
    parser.add_argument("--validation_steps", type=int, default=1000, help="Text phase: render the prompts every N.")
    parser.add_argument("--validation_inference_steps", type=int, default=32)
    parser.add_argument("--report_to", default="tensorboard", help="Accelerate tracker, or 'none'.")
    parser.add_argument("--push_to_hub", action="store_true")
    parser.add_argument("--hub_model_id", default=None)
    parser.add_argument("--hub_token", default=None)
    args = parser.parse_args(argv)
    if args.max_train_steps < 1 or args.train_batch_size < 1 or args.gradient_accumulation_steps < 1:
        parser.error("--max_train_steps, --train_batch_size and --gradient_accumulation_steps must be positive.")
    if args.mask_ratio is not None and not 0 < args.mask_ratio <= 1:
        parser.error("--mask_ratio must be in (0, 1].")
    if not 0 <= args.text_token_dropout < 1:
        parser.error("--text_token_dropout must be in [0, 1).")
    if args.text_token_dropout and args.phase != "text":
        parser.error("--text_token_dropout applies to the text phase only.")
    if not (math.isfinite(args.pooled_text_noise) and args.pooled_text_noise >= 0):
        parser.error(f"--pooled_text_noise must be a finite number ≥ 0, got {args.pooled_text_noise}.")
    if args.pooled_text_noise and args.phase != "text":
        parser.error("--pooled_text_noise applies to the text phase only.")
    if not 0 <= args.inpainting_prob <= 1:
        parser.error(f"--inpainting_prob must be in [0, 1], got {args.inpainting_prob}.")
    if not 0 <= args.inpainting_own_prob <= 1:
        parser.error(f"--inpainting_own_prob must be in [0, 1], got {args.inpainting_own_prob}.")
    if args.inpainting_own_prob and not args.inpainting_prob:
        parser.error("--inpainting_own_prob needs --inpainting_prob (it shapes those batches).")
    if args.inpainting_prob and args.phase != "text":
        parser.error("--inpainting_prob applies to the text phase only (the gap takes another sample's caption).")
    if not 0 < args.inpainting_gap_s[0] <= args.inpainting_gap_s[1]:
        parser.error(
            f"--inpainting_gap_s needs 0 < MIN ≤ MAX, got {args.inpainting_gap_s[0]} {args.inpainting_gap_s[1]}."
        )
    if args.push_to_hub and not args.hub_model_id:
        parser.error("--push_to_hub needs --hub_model_id.")
    if args.teacher is None:
        passed = [f"--{name}" for name in DISTILLATION_OPTIONS if getattr(args, name) is not None]
        if passed:
            parser.error(f"{', '.join(passed)} set the distillation from a teacher: pass --teacher too.")
    if args.teacher is not None and args.head == "diffusion":
        parser.error("--teacher distils into a one-step energy head: it does not apply to --head diffusion.")
    if args.lora_rank is None:
        passed = [f"--{name}" for name in LORA_OPTIONS if getattr(args, name) is not None]
        if passed:
            parser.error(f"{', '.join(passed)} configure a LoRA adapter: pass --lora_rank too.")
    else:
        if args.lora_rank < 1 or (args.lora_alpha is not None and not args.lora_alpha > 0):
            parser.error(f"--lora_rank must be a positive integer and --lora_alpha > 0, got {args.lora_rank}.")
        if args.phase != "text" or args.teacher is not None:
            parser.error("--lora_rank fine-tunes a trained model on captioned audio: --phase text, without --teacher.")
        if args.lora_head_target is not None and not args.lora_head:
            parser.error("--lora_head_target chooses the head's layers of a head adapter: pass --lora_head too.")
    return args


def resolve_head_options(args, head_type: str) -> None:
    """The options of the pipeline's kind of head get their defaults; those of the other kind are refused."""
    if args.head is not None and args.head != head_type:
        hint = ""
        if args.head == "energy":
            hint = (
                " To train an energy-head student of this pipeline, assemble one first: python "
                f"examples/training/create_impact_pipeline.py --teacher {args.pipeline} --head energy --output_dir "
                "STUDENT, then train STUDENT."
            )
        raise ValueError(f"--head {args.head}, but {args.pipeline} has a {head_type} head.{hint}")
    args.head = head_type
    own = dict(DIFFUSION_OPTIONS) if head_type == "diffusion" else {**ENERGY_OPTIONS, **DISTILLATION_OPTIONS}
    foreign = ENERGY_OPTIONS if head_type == "diffusion" else DIFFUSION_OPTIONS
    passed = [f"--{name}" for name in foreign if getattr(args, name) is not None]
    if head_type == "diffusion" and args.teacher is not None:
        passed.append("--teacher")
    if head_type == "energy" and args.lora_head:
        passed.append("--lora_head")
    if passed:
        raise ValueError(f"{', '.join(passed)} do(es) not apply to {args.pipeline}'s {head_type} head.")
    for name, default in own.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    if head_type == "energy" and (args.energy_samples < 2 or not 0 < args.energy_alpha < 2):
        raise ValueError(
            f"--energy_samples must be at least 2 and --energy_alpha in (0, 2), got {args.energy_samples} and "
            f"{args.energy_alpha}."
        )


def check_audioldm_format(pipeline: ImpactPipeline) -> None:
    """The front-end is AudioLDM's (16 kHz, hop 160, 64 mels): the pipeline's components must match it."""
    expected = (SAMPLING_RATE, HOP_LENGTH, N_MELS)
    found = vocoder_front_end(pipeline.vocoder)
    if found != expected:
        raise ValueError(
            f"Training uses AudioLDM's front-end (sampling rate, hop, mel bins) = {expected}, but this pipeline's "
            f"vocoder gives {found}."
        )


@contextlib.contextmanager
def ema_weights(ema: EMAModel, parameters):
    """The EMA weights in the model for the duration, the training weights restored afterwards."""
    ema.store(parameters)
    ema.copy_to(parameters)
    try:
        yield
    finally:
        ema.restore(parameters)


@contextlib.contextmanager
def eval_mode(*modules):
    """Modules in eval mode (no dropout) for the duration, their previous mode restored afterwards."""
    modes = [module.training for module in modules]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for module, mode in zip(modules, modes):
            module.train(mode)


@torch.no_grad()
def render_validation(pipeline, args, output_dir: Path, global_step: int, accelerator) -> None:
    """Generate the validation prompts with fixed seeds; write WAVs, one mel-spectrogram PNG, and TensorBoard audio."""
    folder = output_dir / "validation" / f"step-{global_step}"
    folder.mkdir(parents=True, exist_ok=True)
    generators = [torch.Generator().manual_seed(args.seed + i) for i in range(len(args.validation_prompts))]
    latents = pipeline(
        args.validation_prompts,
        num_inference_steps=args.validation_inference_steps,
        generator=generators,
        output_type="latent",
    ).audios
    mels = pipeline.decode_latents(latents)
    sampling_rate = pipeline.vocoder.config.sampling_rate
    num_samples = round(pipeline.max_audio_length_in_s * sampling_rate)  # cropped as the pipeline's own output
    waveforms = pipeline.mel_spectrogram_to_waveform(mels)[:, :num_samples].numpy()
    for index, waveform in enumerate(waveforms):
        soundfile.write(folder / f"{index}.wav", waveform, sampling_rate)
    save_mel_spectrograms_png(mels[:, 0].float().cpu().numpy(), args.validation_prompts, folder / "mel.png")
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            for index, (prompt, waveform) in enumerate(zip(args.validation_prompts, waveforms)):
                tracker.writer.add_audio(f"validation/{index}: {prompt}", waveform, global_step, sampling_rate)


def create_accelerator(args) -> Accelerator:
    """Determinism, logging and the Accelerator; the output folder exists afterwards (on the main process)."""
    if args.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS needs it (CUDA only)
        torch.use_deterministic_algorithms(True)
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    output_dir = Path(args.output_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        # Some parameters get no gradient in a step: the text layers in the unconditional phase, or in a batch whose
        # samples all drew the null condition. DistributedDataParallel must be told, or it stops with an error.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    return accelerator


def load_pipeline(args, accelerator: Accelerator) -> tuple[ImpactPipeline, torch.dtype]:
    """The pipeline to train: the transformer and head in training mode, VAE, vocoder and text encoders frozen (in
    the mixed-precision dtype, returned)."""
    pipeline = ImpactPipeline.from_pretrained(args.pipeline)
    pipeline.set_progress_bar_config(disable=True)
    if pipeline.head_type is None:
        raise ValueError(f"{args.pipeline} has no head (`diff_head` or `energy_head`): it cannot be trained.")
    resolve_head_options(args, pipeline.head_type)
    for option in ("text_token_dropout", "pooled_text_noise"):
        if getattr(args, option) and pipeline.transformer.config.pooled_text_embed_dim is None:
            raise ValueError(f"--{option} needs a transformer with a pooled text embedding (`pooled_text_embed_dim`).")
    check_audioldm_format(pipeline)
    frozen_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    for name in FROZEN_COMPONENTS:
        module = getattr(pipeline, name)
        if module is not None:
            module.requires_grad_(False).eval().to(accelerator.device, dtype=frozen_dtype)
    head = getattr(pipeline, HEAD_ATTRIBUTES[args.head])
    pipeline.transformer.train()
    head.train()
    if args.gradient_checkpointing:
        pipeline.transformer.enable_gradient_checkpointing()
        head.enable_gradient_checkpointing()
    return pipeline, frozen_dtype


def add_lora_adapter(args, pipeline: ImpactPipeline) -> dict:
    """--lora_rank: freeze the transformer and the head and give the transformer (and with --lora_head the diffusion
    head) a fresh LoRA adapter (PEFT's initialisation: A random, B zero, so training starts from the base model's
    output); returns each adapted component's `LoraConfig`."""
    from peft import LoraConfig

    pipeline.transformer.requires_grad_(False)
    head = getattr(pipeline, HEAD_ATTRIBUTES[args.head]).requires_grad_(False).eval()
    targets = {"transformer": args.lora_target or DEFAULT_LORA_TARGET_MODULES}
    if args.lora_head:
        targets["diff_head"] = args.lora_head_target or DEFAULT_HEAD_LORA_TARGET_MODULES
        head.train()
    configs = {}
    torch.manual_seed(args.seed)  # the adapters' initial A (a resumed run reads them from its checkpoint)
    for component, target_modules in targets.items():
        configs[component] = LoraConfig(
            r=args.lora_rank,
            lora_alpha=args.lora_alpha or args.lora_rank,
            target_modules=target_modules,
            init_lora_weights=True,
        )
        getattr(pipeline, component).add_adapter(configs[component])
    return configs


def save_trained_adapter(args, accelerator, pipeline, lora_configs, ema, trained_parameters, global_step) -> None:
    """--lora_rank: the EMA weights of the adapter, saved as `pytorch_lora_weights.safetensors` with the base model's
    fingerprint, and its card; the validation audio is rendered with it. Main process only."""
    from peft.utils import get_peft_model_state_dict

    ema.copy_to(trained_parameters)
    for component in lora_configs:
        getattr(pipeline, component).eval()
    output_dir = Path(args.output_dir)
    render_validation(pipeline, args, output_dir, global_step, accelerator)
    lora_config, head_config = lora_configs["transformer"], lora_configs.get("diff_head")
    ImpactPipeline.save_lora_weights(
        output_dir,
        transformer_lora_layers=get_peft_model_state_dict(pipeline.transformer),
        transformer_lora_adapter_metadata=lora_config.to_dict(),
        base_model_fingerprint=base_model_fingerprint(pipeline.transformer),
        diff_head_lora_layers=get_peft_model_state_dict(pipeline.diff_head) if head_config else None,
        diff_head_lora_adapter_metadata=head_config.to_dict() if head_config else None,
    )
    adapted = f"{', '.join(sorted(lora_config.target_modules))} of the transformer"
    if head_config:
        adapted += f" and {', '.join(sorted(head_config.target_modules))} of the diffusion head"
    data = args.train_latents or args.train_data
    trigger = args.lora_trigger or args.validation_prompts[0]
    card = f"""---
library_name: diffusers
base_model: {args.pipeline}
tags:
- diffusers_impact
- text-to-audio
- lora
---

# LoRA adapter for `{args.pipeline}`

Trigger caption: **{trigger}**

```python
from diffusers_impact import ImpactPipeline

pipe = ImpactPipeline.from_pretrained("{args.pipeline}")
pipe.load_lora_weights("{args.hub_model_id or output_dir}")
audio = pipe("{trigger}").audios[0]
```

Trained with `examples/training/train_impact.py --lora_rank {args.lora_rank}` on `{data}`: {global_step} steps of
{args.train_batch_size} × {accelerator.num_processes} × {args.gradient_accumulation_steps} clips, AdamW lr
{args.learning_rate}, EMA {args.ema_decay}; rank {lora_config.r}, α {lora_config.lora_alpha}, on
{adapted} (every base weight frozen).
Base model fingerprint: `{base_model_fingerprint(pipeline.transformer)}` (loading into another base model is refused).
"""
    (output_dir / "README.md").write_text(card)
    if args.push_to_hub:
        from huggingface_hub import create_repo, upload_folder

        create_repo(args.hub_model_id, token=args.hub_token, exist_ok=True)
        upload_folder(
            repo_id=args.hub_model_id,
            folder_path=output_dir,
            allow_patterns=["pytorch_lora_weights.safetensors", "README.md"],
            token=args.hub_token,
        )


def load_teacher(args, accelerator: Accelerator, pipeline: ImpactPipeline, frozen_dtype) -> torch.nn.Module | None:
    """The frozen teacher transformer (`--teacher`), checked to read the student's tokens and text condition."""
    if args.teacher is None:
        return None
    teacher = ImpactPipeline.from_pretrained(
        args.teacher, text_encoder=None, tokenizer=None, clap_text_encoder=None, clap_tokenizer=None
    ).transformer
    if teacher is None:
        raise ValueError(f"--teacher {args.teacher} has no transformer to distil from.")
    student = pipeline.transformer
    shared = (
        "latent_channels",
        "latent_length",
        "latent_width",
        "patch_size",
        "text_embed_dim",
        "pooled_text_embed_dim",
    )
    differing = {
        key: (student.config[key], teacher.config[key]) for key in shared if student.config[key] != teacher.config[key]
    }
    if differing:
        details = ", ".join(
            f"{key} {mine} (student) vs {theirs} (teacher)" for key, (mine, theirs) in differing.items()
        )
        raise ValueError(
            f"--teacher {args.teacher} does not read the same tokens and text condition as {args.pipeline}: {details}."
        )
    num_layers = student.config.num_decoder_layers
    if args.distill_layer is not None and not 1 <= args.distill_layer <= num_layers:
        raise ValueError(
            f"--distill_layer must be a decoder block of the student, 1 to {num_layers}; got {args.distill_layer}."
        )
    return teacher.requires_grad_(False).eval().to(accelerator.device, dtype=frozen_dtype)


def load_training_data(args, accelerator: Accelerator):
    """The dataset: pre-computed latents or audio, with captions in the text phase; at least one global batch."""
    text_phase = args.phase == "text"
    if args.train_latents:
        dataset = LatentCaptionDataset(load_latent_dataset(args.train_latents, require_captions=text_phase))
    else:
        caption_column = args.caption_column if text_phase else None
        dataset = AudioCaptionDataset(
            load_audio_dataset(args.train_data, args.split, args.audio_column, caption_column)
        )
    if len(dataset) < args.train_batch_size * accelerator.num_processes:
        raise ValueError(
            f"The dataset has {len(dataset)} examples, fewer than one global batch "
            f"({args.train_batch_size} × {accelerator.num_processes} processes)."
        )
    return dataset


def create_optimizer(args, accelerator: Accelerator, transformer, *heads):
    """AdamW, no weight decay on 1-D tensors, biases and the head (MAR) or heads (the distillation projector too), and
    the learning-rate schedule."""
    decay, no_decay = [], [parameter for head in heads for parameter in head.parameters() if parameter.requires_grad]
    for name, parameter in transformer.named_parameters():
        if parameter.requires_grad:  # (a LoRA run trains the adapter only)
            (no_decay if parameter.ndim < 2 or name.endswith(".bias") else decay).append(parameter)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
    )
    lr_scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes,
    )
    return optimizer, lr_scheduler


def open_metrics_log(accelerator: Accelerator, output_dir: Path, global_step: int) -> Path:
    """`logs/metrics.jsonl`, without the steps logged after `global_step` (those of a run we resume, or of a crash:
    a line cut off by a crash is dropped too)."""
    metrics_path = output_dir / "logs" / "metrics.jsonl"
    if accelerator.is_main_process:
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        if metrics_path.exists():
            lines = metrics_path.read_text().split("\n")[:-1]
            kept = [line for line in lines if json.loads(line)["step"] <= global_step]
            metrics_path.write_text("".join(line + "\n" for line in kept))
    return metrics_path


def prepare_batch(args, accelerator, pipeline, examples, generators, frozen_dtype, skipped: dict):
    """
    The model inputs of one batch: latents (sampled from pre-computed posteriors, or encoded from audio segments),
    the text condition, and the per-sample torch generators of the samples kept; `None` when every file was unusable.
    """
    _, torch_generators, numpy_generators = generators
    text_phase = args.phase == "text"
    if args.train_latents:
        batch = collate_latent_captions(examples, numpy_generators)
        with torch.no_grad():
            noise = randn_tensor(batch["latent_mean"].shape, generator=torch_generators)
            latents = batch["latent_mean"] + batch["latent_std"] * noise
            latents = (latents * pipeline.vae.config.scaling_factor).to(accelerator.device)
    else:
        # Segments as long as the model's output (AudioLDM: 10.24 s, 1024 mel frames).
        batch = collate_audio_captions(examples, numpy_generators, num_samples=pipeline.num_mel_frames * HOP_LENGTH)
        # The kept samples' generators (unusable files are dropped from the batch).
        torch_generators = [g for g, e in zip(torch_generators, examples) if e["skip_reason"] is None]
        known = len(skipped)
        skipped.update((e["index"], e["skip_reason"]) for e in examples if e["skip_reason"] is not None)
        if len(skipped) > known:
            logger.warning(f"Unusable audio files skipped so far: {dict(Counter(skipped.values()))}")
        if not torch_generators:  # every file of the batch was unusable
            return None
        with torch.no_grad():
            waveforms = batch["waveforms"].to(accelerator.device, frozen_dtype)
            latents = waveform_to_latents(
                pipeline.vae, waveforms, generator=torch_generators, num_frames=pipeline.num_mel_frames
            ).float()

    condition = {}
    if text_phase and "prompt_embeds" in batch:  # pre-computed text embeddings
        pooled = batch.get("pooled_prompt_embeds")
        condition = {
            "encoder_hidden_states": batch["prompt_embeds"].to(accelerator.device),
            "encoder_attention_mask": batch["prompt_attention_mask"].to(accelerator.device),
            "pooled_projections": None if pooled is None else pooled.to(accelerator.device),
        }
    elif text_phase:
        with torch.no_grad():
            prompt_embeds, attention_mask, pooled, *_ = pipeline.encode_prompt(
                batch["captions"], accelerator.device, do_classifier_free_guidance=False
            )
        condition = {
            "encoder_hidden_states": prompt_embeds.float(),
            "encoder_attention_mask": attention_mask,
            "pooled_projections": None if pooled is None else pooled.float(),
        }
    if args.pooled_text_noise:  # text phase only (parse_args)
        pooled = condition["pooled_projections"]
        noise = randn_tensor(pooled.shape, generator=torch_generators, device=pooled.device, dtype=pooled.dtype)
        condition["pooled_projections"] = F.normalize(pooled + args.pooled_text_noise * noise, dim=-1)
    if args.text_token_dropout:  # text phase only (parse_args)
        # The pooled slot stays a key whatever the token mask, so these samples see the pooled vector alone.
        keep_tokens = uniform_per_sample(len(latents), torch_generators) >= args.text_token_dropout
        mask = condition["encoder_attention_mask"]
        condition["encoder_attention_mask"] = mask.bool() & keep_tokens.to(mask.device).unsqueeze(1)
    return latents, condition, torch_generators


def training_step(args, accelerator, training: dict, latents, condition, batch_generator, torch_generators, state):
    """One forward and backward pass (and an optimiser step when gradients are synchronised); returns the loss and, for
    the energy head, its terms. A non-finite loss on any process stops training, naming the step and the last good
    checkpoint."""
    transformer, head, optimizer = training["transformer"], training["head"], training["optimizer"]
    with accelerator.accumulate(*training["wrapped"]):
        torch.manual_seed(int(torch.randint(0, 2**62, (), generator=batch_generator)))  # dropout
        # One ratio per global batch (MAR draws one per batch; here the processes share it).
        mask_ratio = args.mask_ratio
        if mask_ratio is None:
            mask_ratio = sample_mask_ratio(batch_generator, args.min_mask_ratio)
        transformer_config = training["models"]["transformer"].config
        tokens = training["models"]["transformer"].patchify(latents)
        maskable = None
        # Drawn only when asked for, so that runs without inpainting batches keep their random streams.
        if args.inpainting_prob and torch.rand((), generator=batch_generator).item() < args.inpainting_prob:
            shortest, longest = training["inpainting_gap_columns"]
            gap_columns = int(torch.randint(shortest, longest + 1, (), generator=batch_generator))
            tokens_per_column = transformer_config.latent_width // transformer_config.patch_size
            tokens, condition, maskable = splice_inpainting_gaps(
                tokens, condition, tokens_per_column, gap_columns, torch_generators, args.inpainting_own_prob
            )
        common = {
            "mask_ratio": mask_ratio,
            "condition_drop_prob": args.condition_drop_prob if args.phase == "text" else 0.0,
            "maskable": maskable,
            **condition,
        }
        if args.head == "energy":
            losses = masked_energy_loss(
                transformer,
                head,
                tokens,
                torch_generators,
                num_samples=args.energy_samples,
                alpha=args.energy_alpha,
                repulsion_weight=args.energy_repulsion,
                teacher=training["teacher"],
                projector=training.get("projector"),
                distill_layer=args.distill_layer,
                distill_loss=args.distill_loss,
                **common,
            )
            loss = losses["energy"] + (args.distill_weight * losses["distill"] if "distill" in losses else 0.0)
            components = {f"{name}_loss": value.detach().item() for name, value in losses.items()}
        else:
            loss = masked_generative_loss(
                transformer,
                head,
                training["noise_scheduler"],
                tokens,
                torch_generators,
                diffusion_batch_mul=args.diffusion_batch_mul,
                **common,
            )
            components = {}
        nonfinite = accelerator.gather(torch.tensor([not torch.isfinite(loss)], device=accelerator.device))
        if nonfinite.any():
            latest = next(iter(checkpoints_newest_first(Path(args.output_dir))), None)
            raise RuntimeError(
                f"The loss is not finite at step {state['global_step'] + 1}; training stopped. The last good "
                f"checkpoint is {latest or 'none (none was saved yet)'}. Lower the learning rate or check the "
                "data, then continue with --resume_from_checkpoint latest."
            )
        accelerator.backward(loss)
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(training["trained_parameters"], args.max_grad_norm)
        optimizer.step()
        training["lr_scheduler"].step()
        optimizer.zero_grad()
    return loss, components


def save_trained_pipeline(args, accelerator, pipeline, models, ema, trained_parameters, global_step) -> None:
    """The EMA weights into the pipeline, saved (with its model card) and optionally pushed; main process only."""
    ema.copy_to(trained_parameters)
    pipeline.transformer = models["transformer"].eval()
    setattr(pipeline, HEAD_ATTRIBUTES[args.head], models[HEAD_ATTRIBUTES[args.head]].eval())
    for name in FROZEN_COMPONENTS:
        module = getattr(pipeline, name)
        if module is not None:
            module.to(torch.float32)
    output_dir = Path(args.output_dir)
    if args.phase == "text":
        render_validation(pipeline, args, output_dir, global_step, accelerator)
    card = pipeline.create_model_card(
        args.hub_model_id,
        training=f"Trained with `examples/training/train_impact.py`, phase `{args.phase}`, {global_step} steps of "
        f"{args.train_batch_size} × {accelerator.num_processes} × {args.gradient_accumulation_steps} clips, AdamW "
        f"lr {args.learning_rate}, mask ratio q = {args.min_mask_ratio}; EMA {args.ema_decay} weights."
        + (
            f" Energy head: energy score of {args.energy_samples} samples per token (α = {args.energy_alpha}, λ = "
            f"{args.energy_repulsion})"
            + (
                f", distilled from `{args.teacher}` ({args.distill_loss}, weight {args.distill_weight}, "
                f"{'the output z' if args.distill_layer is None else f'decoder block {args.distill_layer}'})."
                if args.teacher
                else "."
            )
            if args.head == "energy"
            else ""
        ),
    )
    card.save(output_dir / "README.md")
    pipeline.save_pretrained(output_dir)
    if args.push_to_hub:  # uploads the pipeline alone (not the checkpoints beside it), with this card if new
        pipeline.push_to_hub(args.hub_model_id, token=args.hub_token, model_card=card)


def main(argv=None) -> None:
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    text_phase = args.phase == "text"
    accelerator = create_accelerator(args)
    pipeline, frozen_dtype = load_pipeline(args, accelerator)
    teacher = load_teacher(args, accelerator, pipeline, frozen_dtype)
    dataset = load_training_data(args, accelerator)
    batches_per_epoch = len(
        epoch_batches(len(dataset), args.train_batch_size, args.seed, 0, 0, accelerator.num_processes)
    )
    # The trained models, by their checkpoint names: the transformer, the head and, distilling, the projector; with
    # --lora_rank the adapted ones (their adapters train; without --lora_head the head is frozen and used as it is).
    head = getattr(pipeline, HEAD_ATTRIBUTES[args.head])
    lora_configs = add_lora_adapter(args, pipeline) if args.lora_rank else None
    models = {"transformer": pipeline.transformer}
    if lora_configs is None or "diff_head" in lora_configs:
        models[HEAD_ATTRIBUTES[args.head]] = head
    if teacher is not None:
        torch.manual_seed(args.seed)  # the projector's initial weights (a resumed run reads them from its checkpoint)
        models["projector"] = distillation_projector(
            pipeline.transformer.config.hidden_size, teacher.config.hidden_size, args.distill_projector_width
        ).to(accelerator.device)
    optimizer, lr_scheduler = create_optimizer(args, accelerator, *models.values())
    *wrapped, optimizer, lr_scheduler = accelerator.prepare(*models.values(), optimizer, lr_scheduler)
    models = {name: accelerator.unwrap_model(model) for name, model in zip(models, wrapped)}
    trained_parameters = list(named_trained_parameters(models).values())
    ema = EMAModel(trained_parameters, decay=args.ema_decay, use_ema_warmup=args.ema_warmup)
    checkpointed = (models, optimizer, lr_scheduler, ema, accelerator.scaler)  # what a checkpoint saves and restores
    training = {
        "transformer": wrapped[0],
        "head": wrapped[1] if len(wrapped) > 1 else head,
        "wrapped": wrapped,
        "models": models,
        "teacher": teacher,
        "optimizer": optimizer,
        "lr_scheduler": lr_scheduler,
        "trained_parameters": trained_parameters,
    }
    if args.head == "diffusion":
        # The head's training noise schedule: its sampler's β schedule and step count. Sampling-time choices of the
        # pipeline's sampler (the default model's DDPM clips x̂₀, for instance) do not apply to training.
        config = pipeline.head_scheduler.config
        schedule = {key: config[key] for key in ("num_train_timesteps", "beta_schedule", "prediction_type")}
        training["noise_scheduler"] = ImpactDiffHeadScheduler(**schedule)
    if args.inpainting_prob:
        # The gap range in whole token columns, within the model's length.
        num_columns = pipeline.transformer.config.latent_length // pipeline.transformer.config.patch_size
        training["inpainting_gap_columns"] = [
            min(num_columns, max(1, round(seconds / pipeline.seconds_per_token_column)))
            for seconds in args.inpainting_gap_s
        ]
    if teacher is not None:
        training["projector"] = wrapped[2]  # (--teacher and --lora_rank exclude each other)

    state = {"global_step": 0, "batch_counter": 0}
    if args.resume_from_checkpoint:
        # The random states are not restored: every draw derives from --seed and the batch counter.
        checkpoint, contents = read_resume_checkpoint(output_dir, args.resume_from_checkpoint, list(models))
        state = restore_checkpoint(contents, *checkpointed)
        ema.to(accelerator.device)  # read onto the CPU
        accelerator.print(f"Resumed from {checkpoint} at step {state['global_step']}.")
    if accelerator.is_main_process:
        accelerator.init_trackers("impact", config={k: str(v) for k, v in vars(args).items()})
    metrics_path = open_metrics_log(accelerator, output_dir, state["global_step"])

    skipped = {}  # dataset index → skip reason: a file skipped in every epoch counts once
    progress = tqdm(
        total=args.max_train_steps, initial=state["global_step"], disable=not accelerator.is_local_main_process
    )
    progress.set_description(f"{args.phase} training")
    while state["global_step"] < args.max_train_steps:
        epoch, offset = divmod(state["batch_counter"], batches_per_epoch)
        batches = epoch_batches(
            len(dataset), args.train_batch_size, args.seed, epoch, accelerator.process_index, accelerator.num_processes
        )[offset:]
        loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=batches, collate_fn=list, num_workers=args.dataloader_num_workers
        )
        for examples in loader:
            generators = batch_generators(
                args.seed, state["batch_counter"], accelerator.process_index * args.train_batch_size, len(examples)
            )
            state["batch_counter"] += 1
            prepared = prepare_batch(args, accelerator, pipeline, examples, generators, frozen_dtype, skipped)
            # Every process takes the same steps (a step is a collective operation): a batch whose files were all
            # unusable on one process is skipped by all of them.
            usable = accelerator.gather(torch.tensor([prepared is not None], device=accelerator.device))
            if not usable.all():
                continue
            latents, condition, torch_generators = prepared
            loss, loss_terms = training_step(
                args, accelerator, training, latents, condition, generators[0], torch_generators, state
            )

            if not accelerator.sync_gradients:
                continue
            ema.step(trained_parameters)
            state["global_step"] += 1
            progress.update(1)
            logs = {"loss": loss.detach().item(), **loss_terms, "lr": lr_scheduler.get_last_lr()[0]}
            progress.set_postfix(**logs)
            accelerator.log(logs, step=state["global_step"])
            if accelerator.is_main_process:
                with metrics_path.open("a") as metrics:
                    metrics.write(json.dumps({"step": state["global_step"], **logs}) + "\n")

            if state["global_step"] % args.checkpointing_steps == 0:
                contents = checkpoint_contents(state, *checkpointed)
                save_checkpoint(accelerator, output_dir, contents, state["global_step"], args.checkpoints_total_limit)
            if text_phase and accelerator.is_main_process and state["global_step"] % args.validation_steps == 0:
                with ema_weights(ema, trained_parameters), eval_mode(*models.values()):
                    render_validation(pipeline, args, output_dir, state["global_step"], accelerator)
            if state["global_step"] >= args.max_train_steps:
                break

    # The EMA weights are the ones saved for inference.
    accelerator.wait_for_everyone()
    if accelerator.is_main_process and lora_configs is not None:
        save_trained_adapter(args, accelerator, pipeline, lora_configs, ema, trained_parameters, state["global_step"])
    elif accelerator.is_main_process:
        save_trained_pipeline(args, accelerator, pipeline, models, ema, trained_parameters, state["global_step"])
        if skipped:
            logger.warning(f"Unusable audio files skipped during training: {dict(Counter(skipped.values()))}")
    accelerator.end_training()


if __name__ == "__main__":
    main()
