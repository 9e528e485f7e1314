# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""Text-to-audio generation with IMPACT: iterative mask-based parallel decoding of AudioLDM VAE latents."""

import contextlib
import copy
import importlib
import inspect
import json
import math
import numbers
import os
import tempfile
import threading
import types
import typing
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, DiffusionPipeline
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.pipelines.pipeline_utils import AudioPipelineOutput
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import logging, replace_example_docstring
from diffusers.utils.constants import HF_MODULES_CACHE
from diffusers.utils.hub_utils import populate_model_card
from diffusers.utils.torch_utils import randn_tensor
from filelock import FileLock
from huggingface_hub import ModelCard, ModelCardData, create_repo, hf_hub_download, upload_folder
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError
from transformers import ClapTextModelWithProjection, PreTrainedModel, PreTrainedTokenizerBase, SpeechT5HifiGan

from ..audio import HOP_LENGTH, N_MELS, PEAK_AMPLITUDE, SAMPLING_RATE, mel_filterbank, mel_spectrogram, resample
from ..diffusers_registration import ACCEPTED_LOADER_CODES, LOADER_FILE, loader_files, write_loader_files
from ..loaders import ImpactLoraLoaderMixin
from ..models import GriffinLimVocoder, ImpactDiffHead, ImpactEnergyHead, ImpactTransformer, vocoder_front_end
from ..schedulers import ImpactDiffHeadScheduler, ImpactMaskScheduler
from ..schedulers.scheduling_impact_mask import GUIDANCE_SCHEDULES
from .audio_input import (
    CROSSFADE_S,
    band_keep_weights,
    input_weights,
    region_columns,
    splice_bands,
    splice_input,
    stitch_mel_windows,
    window_starts,
)


logger = logging.get_logger(__name__)

OUTPUT_TYPES = ("np", "pt", "latent")
# `__call__`'s defaults for the settings a model can recommend instead (`recommended_call_settings`); a one-step
# energy head has no `num_diffusion_steps`.
CALL_DEFAULTS = {"num_inference_steps": 32, "num_diffusion_steps": 100, "guidance_scale": 5.0}
# The components of each kind of token head: MAR's diffusion head with its sampler, or AudioDEAR's one-step energy head.
HEAD_COMPONENTS = {"diffusion": ("diff_head", "head_scheduler"), "energy": ("energy_head",)}
# How the model card names each kind of head (`None`: a text-only pipeline).
HEAD_DESCRIPTIONS = {
    "diffusion": "a diffusion head (MAR's MLP, `num_diffusion_steps` sampling steps per decoding iteration)",
    "energy": "a one-step energy-scoring head (AudioDEAR's `ImpactEnergyHead`: one call per decoding iteration)",
    None: "none (this folder holds the text components only)",
}
# What generating needs besides the text components and one head. A pipeline may be built with only the text
# components (the others `None`) to compute prompt embeddings separately, e.g. to save memory.
GENERATION_COMPONENTS = ("transformer", "scheduler", "vae", "vocoder")
# Where the pooled sentence embedding comes from, for a transformer with `pooled_text_embed_dim` set.
POOLED_TEXT_EMBEDDINGS = ("clap", "text_encoder_mean")

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> import scipy.io.wavfile
        >>> import torch
        >>> from diffusers_impact import ImpactPipeline

        >>> pipe = ImpactPipeline.from_pretrained("path/or/hub-id-of-an-impact-pipeline")
        >>> audio = pipe(
        ...     "a dog barking in the distance",
        ...     num_inference_steps=32,
        ...     guidance_scale=5.0,
        ...     generator=torch.Generator().manual_seed(0),
        ... ).audios[0]
        >>> scipy.io.wavfile.write("dog.wav", rate=pipe.vocoder.config.sampling_rate, data=audio)
        ```
"""


class _PerThread:
    """
    A pipeline attribute with one value per calling thread. diffusers keeps per-call state on the pipeline
    (`_guidance_scale`, `_num_timesteps`, `_interrupt`), where callbacks read and change it; per thread, several
    threads can call one pipeline object at once without seeing each other's values.
    """

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, pipeline, owner=None):
        if pipeline is None:
            return self
        try:
            return pipeline.__dict__["_call_states"][threading.get_ident()][self.name]
        except KeyError:
            raise AttributeError(f"`{self.name.lstrip('_')}` is set when this thread calls the pipeline.") from None

    def __set__(self, pipeline, value):
        states = pipeline.__dict__.setdefault("_call_states", {})
        states.setdefault(threading.get_ident(), {})[self.name] = value


def _is_integer(value) -> bool:
    """Python and NumPy integers, not booleans (`True` is not a step count)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, torch.Tensor))


def _is_finite_real(value) -> bool:
    """Finite Python and NumPy numbers, not booleans and not tensors."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, torch.Tensor)) and math.isfinite(value)


DIFFUSION_STEP_ANNEALING_SHAPES = ("linear", "geometric")


def annealed_diffusion_steps(
    num_diffusion_steps: int | tuple[int, int], num_iterations: int, annealing: str = "linear"
) -> list[int]:
    """
    The diffusion head's step count at each decoding iteration: constant for an int; for a pair `(first, last)`,
    diffusion step annealing (DiSA, arXiv 2505.20297): `first` at the first iteration, `last` at the final one, and
    in between, rounded half up, DiSA's `"linear"` schedule or a `"geometric"` one (a constant ratio from one
    iteration to the next, so fewer steps in the middle iterations: 323 head calls instead of 440 for 50→5 at T = 16).

    Example:

    ```py
    >>> from diffusers_impact.pipelines.pipeline_impact import annealed_diffusion_steps

    >>> annealed_diffusion_steps(100, 3)
    [100, 100, 100]
    >>> annealed_diffusion_steps((50, 5), 4)
    [50, 35, 20, 5]
    >>> annealed_diffusion_steps((50, 5), 4, annealing="geometric")
    [50, 23, 11, 5]
    ```
    """
    if annealing not in DIFFUSION_STEP_ANNEALING_SHAPES:
        raise ValueError(f"`annealing` must be one of {DIFFUSION_STEP_ANNEALING_SHAPES}, got {annealing!r}.")
    if not isinstance(num_diffusion_steps, (tuple, list)):
        return [int(num_diffusion_steps)] * num_iterations
    first, last = (int(steps) for steps in num_diffusion_steps)
    span = max(num_iterations - 1, 1)
    if annealing == "linear":
        steps = [first + (last - first) * index / span for index in range(num_iterations)]
    else:
        steps = [first * (last / first) ** (index / span) for index in range(num_iterations)]
    return [math.floor(step + 0.5) for step in steps]


def _config_value_fits(annotation, value) -> bool | None:
    """Whether a config.json value fits an `__init__` annotation; `None` where the annotation is not a plain scalar."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        fits = [_config_value_fits(argument, value) for argument in typing.get_args(annotation)]
        return None if None in fits else any(fits)
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    return None


def _check_pipeline_folder(folder: str, passed_components: set[str]) -> None:
    """
    A local pipeline folder, before diffusers loads it: every component that model_index.json lists has its folder
    and config file, and every scalar value in the configs of diffusers and diffusers_impact classes has the type of
    the class's `__init__` argument (diffusers would fail deep inside `__init__` with an unrelated message).
    """
    index_path = os.path.join(folder, "model_index.json")
    if not os.path.isfile(index_path):
        raise FileNotFoundError(f"{folder} has no model_index.json: it is not a folder written by `save_pretrained`.")
    for name, entry in json.loads(Path(index_path).read_text(encoding="utf-8")).items():
        if name.startswith("_") or not isinstance(entry, list) or entry[0] is None or name in passed_components:
            continue
        library, class_name = entry
        component_folder = os.path.join(folder, name)
        if not os.path.isdir(component_folder):
            raise FileNotFoundError(
                f"The component folder {component_folder} is missing: {index_path} lists `{name}` ({class_name}). "
                f"Restore that folder, or pass the component yourself: `from_pretrained(..., {name}=...)`."
            )
        if library not in ("diffusers", "diffusers_impact"):
            continue  # transformers checks its own configs
        component_class = getattr(importlib.import_module(library), class_name, None)
        config_name = getattr(component_class, "config_name", None)
        if config_name is None:
            continue
        config_path = os.path.join(component_folder, config_name)
        if not os.path.isfile(config_path):
            raise FileNotFoundError(
                f"{config_path} is missing: the `{name}` component ({class_name}) needs its config."
            )
        try:
            config = json.loads(Path(config_path).read_text(encoding="utf-8"))
        except ValueError as error:
            raise ValueError(f"{config_path} is not valid JSON: {error}.") from None
        defaults = inspect.signature(component_class.__init__).parameters
        for key, value in config.items():
            parameter = defaults.get(key)
            if parameter is None or (value is None and parameter.default is None):
                continue
            if _config_value_fits(parameter.annotation, value) is False:
                expected = getattr(parameter.annotation, "__name__", str(parameter.annotation))
                raise ValueError(
                    f"{config_path}: `{key}` must be {expected} for {class_name}, got {_describe(value)}. Fix the value "
                    "in that file."
                )


def _check_loader_files(folder: str) -> bool:
    """
    Whether the folder has the loader files of `diffusers_registration` (then diffusers must be allowed to import
    them); refuse one that is not exactly what `save_pretrained` writes or wrote before (`ACCEPTED_LOADER_CODES`),
    since diffusers would run it.
    """
    model_index = json.loads(Path(folder, "model_index.json").read_text(encoding="utf-8"))
    present = [path for path in loader_files(model_index) if os.path.isfile(os.path.join(folder, path))]
    for path in present:
        if Path(folder, path).read_text(encoding="utf-8") not in ACCEPTED_LOADER_CODES:
            raise ValueError(
                f"{os.path.join(folder, path)} is not the loader file diffusers_impact writes: loading would run its "
                "code. Inspect it, then pass `trust_remote_code=True` to run it, or replace it with "
                "`diffusers_impact.diffusers_registration.LOADER_CODE`."
            )
    return bool(present)


def _download_loader_files(repo_id: str, kwargs: dict) -> str | None:
    """
    Fetch a Hub repo's model_index.json and loader files (nothing else) into the Hub cache, so that they can be
    checked before diffusers imports them; returns the snapshot folder, or `None` where the repo cannot be read
    (diffusers then reports why).
    """
    options = {
        key: kwargs[key]
        for key in ("cache_dir", "revision", "token", "local_files_only", "force_download")
        if key in kwargs
    }
    try:
        index_file = hf_hub_download(repo_id, "model_index.json", **options)
    except (OSError, ValueError):
        return None
    folder = os.path.dirname(index_file)
    options["revision"] = os.path.basename(folder)  # the commit just read: every file from the same snapshot
    for path in loader_files(json.loads(Path(index_file).read_text(encoding="utf-8"))):
        try:
            hf_hub_download(repo_id, path, **options)
        except EntryNotFoundError:
            continue
    return folder


def _check_generated(name: str, values: torch.Tensor) -> None:
    """Never return non-finite audio silently: name the first stage whose output is not finite."""
    if not torch.isfinite(values).all():
        raise FloatingPointError(
            f"The generated {name} contains NaN or infinite values. In float16 this is usually an overflow: run the "
            "pipeline in float32 or bfloat16. Otherwise check the weights and any `latents` or embeddings passed in."
        )


def _describe(value) -> str:
    """`repr` for a short value, its type (and shape) for tensors and arrays, for error messages."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"a {type(value).__module__}.{type(value).__name__} of shape {tuple(value.shape)}"
    return f"{value!r} ({type(value).__name__})"


class ImpactPipeline(DiffusionPipeline, ImpactLoraLoaderMixin):
    r"""
    Text-to-audio generation with IMPACT (Huang et al., ICML 2025): a transformer reads the text condition and the
    latent tokens generated so far, and a small diffusion head samples the tokens chosen at each decoding iteration.
    The latents are decoded by the AudioLDM VAE into a mel spectrogram and by the vocoder (HiFi-GAN) into a waveform.

    The same pipeline runs AudioDEAR's one-step variant: with an `energy_head` ([`ImpactEnergyHead`]) instead of
    `diff_head` and `head_scheduler`, each decoding iteration makes one head call, which maps Gaussian noise to the
    iteration's tokens. Classifier-free guidance then acts on the transformer's hidden vectors before the head,
    z = z_uncond + β(t) · (z_cond − z_uncond) (as EAR does; a one-step generator has no ε to guide), so that
    `guidance_scale=1.0` is exactly the conditional branch. `num_diffusion_steps`, `diffusion_step_annealing` and
    `latents` (the diffusion head's starting noise) do not apply to it and are refused.

    This model inherits from [`~diffusers.DiffusionPipeline`] (loading, saving, `to`, offloading, progress bars) and
    [`ImpactLoraLoaderMixin`] (LoRA adapters on the transformer: `load_lora_weights`, `set_adapters`, `fuse_lora`, ...).

    Args:
        vae ([`~diffusers.AutoencoderKL`]): AudioLDM VAE between mel spectrograms and latents.
        vocoder ([`~transformers.SpeechT5HifiGan`] or [`GriffinLimVocoder`]): From mel spectrograms to waveforms:
            AudioLDM's HiFi-GAN, or a non-learned Griffin-Lim inversion (the embedded default model's).
        text_encoder ([`~transformers.PreTrainedModel`], *optional*): Text encoder whose `last_hidden_state` is the
            text token sequence (Flan-T5's [`~transformers.T5EncoderModel`] in the paper; any encoder works, e.g. the
            BERT-style all-MiniLM-L6-v2 of the embedded default model). Needed for `prompt`, not for `prompt_embeds`.
        tokenizer ([`~transformers.PreTrainedTokenizerBase`], *optional*): Tokenizer of `text_encoder`.
        transformer ([`ImpactTransformer`]): The transformer-based latent encoder.
        diff_head ([`ImpactDiffHead`], *optional*): The per-token diffusion head (IMPACT); `None` with `energy_head`.
        scheduler ([`ImpactMaskScheduler`]): Decoding schedule: positions per iteration and guidance schedule.
        head_scheduler ([`ImpactDiffHeadScheduler`] or a diffusers scheduler, *optional*): Sampler run by the
            diffusion head; `None` with `energy_head`.
        clap_text_encoder ([`~transformers.ClapTextModelWithProjection`], *optional*): Gives the pooled sentence
            embedding (unit-norm CLAP text embedding, as in the paper) when `transformer.config.pooled_text_embed_dim`
            is set and `pooled_text_embedding` is `"clap"`.
        clap_tokenizer ([`~transformers.PreTrainedTokenizerBase`], *optional*): Tokenizer of `clap_text_encoder`.
        pooled_text_embedding (`str`, defaults to `"clap"`): Source of the pooled sentence embedding, for a
            transformer that takes one: `"clap"` (`clap_text_encoder`), or `"text_encoder_mean"`, the unit-norm mean of
            `text_encoder`'s token states over the prompt's real tokens (sentence-transformers' pooling, which
            all-MiniLM-L6-v2 was trained for; the embedded default model uses it). Stored in `model_index.json`.
        recommended_call_settings (`dict`, *optional*): How this model should generate, used by every call that does
            not pass the argument itself: `num_inference_steps`, `num_diffusion_steps` (a list of two for DiSA) and
            `guidance_scale`. Stored in `model_index.json` (the embedded default model: 8 iterations, 25 head steps).
        energy_head ([`ImpactEnergyHead`], *optional*): AudioDEAR's one-step energy-scoring head, in place of
            `diff_head` and `head_scheduler` (pass one kind of head, not both).

    A pipeline with only the text components (`transformer`, the head components, `scheduler`, `vae` and
    `vocoder` passed as `None`, e.g. `from_pretrained(path, transformer=None, diff_head=None, ...)`) encodes prompts
    with [`~ImpactPipeline.encode_prompt`] so that the text encoders need not stay in memory while generating; pass
    its embeddings to a pipeline loaded with `text_encoder=None, tokenizer=None`. Calling it to generate is an error.

    Example (a tiny untrained pipeline, runnable offline; use `ImpactPipeline.from_pretrained(...)` for a real one):

    ```py
    >>> import torch
    >>> from diffusers_impact.testing_utils import tiny_impact_pipeline

    >>> pipe = tiny_impact_pipeline()
    >>> pipe.set_progress_bar_config(disable=True)
    >>> audio = pipe("a dog barking", num_inference_steps=4, generator=torch.Generator().manual_seed(0)).audios
    >>> audio.shape  # 0.64 s at 1.6 kHz for the tiny pipeline; 163840 samples (10.24 s at 16 kHz) for AudioLDM
    (1, 1024)
    ```

    Audio input (inpainting here; also continuation, variations, frequency inpainting and long-form, see `__call__`)
    needs AudioLDM's mel front-end, as in this tiny pipeline of 1.28 s clips at 16 kHz:

    ```py
    >>> import numpy as np

    >>> pipe = tiny_impact_pipeline(audioldm_format=True, latent_length=32)
    >>> pipe.set_progress_bar_config(disable=True)
    >>> recording = np.random.default_rng(0).uniform(-0.3, 0.3, 16000).astype(np.float32)  # 1 s
    >>> filled = pipe(
    ...     "a dog barking", audio=recording, mask_start_s=0.4, mask_end_s=0.6, num_inference_steps=4,
    ...     generator=torch.Generator().manual_seed(0),
    ... ).audios[0]
    >>> filled.shape, bool((filled[:6400] == recording[:6400]).all())  # the input, exactly, outside the region
    ((16000,), True)
    ```
    """

    # The token head runs between two transformer calls at every decoding iteration: in the chain, each head call
    # would move the transformer off the device. It is outside it instead (diffusers then gives it its own hook: on
    # the device from its first call until the call ends), like a ControlNet.
    model_cpu_offload_seq = "text_encoder->clap_text_encoder->transformer->vae->vocoder"
    # Per-call state, per thread (see `_PerThread`): a pipeline object can serve several threads at once.
    _guidance_scale = _PerThread()
    _num_timesteps = _PerThread()
    _interrupt = _PerThread()
    # A folder may leave the text encoder out when a package provides it (the embedded default model does), and a
    # text-only pipeline leaves out everything else (`GENERATION_COMPONENTS`, the head); a pipeline has one kind of head.
    _optional_components = [
        "text_encoder",
        "tokenizer",
        "clap_text_encoder",
        "clap_tokenizer",
        *GENERATION_COMPONENTS,
        *(name for names in HEAD_COMPONENTS.values() for name in names),
    ]
    _callback_tensor_inputs = ["latents"]

    def __init__(
        self,
        vae: AutoencoderKL | None,
        vocoder: SpeechT5HifiGan | GriffinLimVocoder | None,
        text_encoder: PreTrainedModel | None,
        tokenizer: PreTrainedTokenizerBase | None,
        transformer: ImpactTransformer | None,
        diff_head: ImpactDiffHead | None,
        scheduler: ImpactMaskScheduler | None,
        head_scheduler: SchedulerMixin | None,
        clap_text_encoder: ClapTextModelWithProjection | None = None,
        clap_tokenizer: PreTrainedTokenizerBase | None = None,
        pooled_text_embedding: str = "clap",
        recommended_call_settings: dict[str, Any] | None = None,
        energy_head: ImpactEnergyHead | None = None,
    ):
        super().__init__()
        if energy_head is not None and (diff_head is not None or head_scheduler is not None):
            raise ValueError(
                "Pass one kind of token head: `energy_head` (one step) or `diff_head` with `head_scheduler` "
                "(diffusion), not both. For a one-step student of a diffusion-head model, build the pipeline with "
                "`diff_head=None, head_scheduler=None`."
            )
        if pooled_text_embedding not in POOLED_TEXT_EMBEDDINGS:
            raise ValueError(
                f"`pooled_text_embedding` must be one of {POOLED_TEXT_EMBEDDINGS}, got {pooled_text_embedding!r}."
            )
        config = transformer.config if transformer is not None else None
        if (
            config is not None
            and pooled_text_embedding == "text_encoder_mean"
            and config.pooled_text_embed_dim not in (None, config.text_embed_dim)
        ):
            raise ValueError(
                f"`pooled_text_embedding='text_encoder_mean'` pools the text encoder's token states "
                f"({config.text_embed_dim} values), but the transformer's `pooled_text_embed_dim` is "
                f"{config.pooled_text_embed_dim}."
            )
        self.register_modules(
            vae=vae,
            vocoder=vocoder,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            transformer=transformer,
            diff_head=diff_head,
            scheduler=scheduler,
            head_scheduler=head_scheduler,
            clap_text_encoder=clap_text_encoder,
            clap_tokenizer=clap_tokenizer,
            energy_head=energy_head,
        )
        allowed = self._call_defaults_for_head()
        unknown = sorted(set(recommended_call_settings or {}) - set(allowed))
        if unknown:
            raise ValueError(
                f"`recommended_call_settings` may set {sorted(allowed)} for this pipeline's head, got {unknown}."
            )
        self.register_to_config(
            pooled_text_embedding=pooled_text_embedding, recommended_call_settings=recommended_call_settings
        )

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def seconds_per_latent_frame(self) -> float:
        """Audio seconds covered by one VAE latent frame (AudioLDM: 4 mel frames of 10 ms)."""
        sampling_rate, hop_length, _ = vocoder_front_end(self.vocoder)
        return self.vae_scale_factor * hop_length / sampling_rate

    @property
    def num_mel_frames(self) -> int:
        """Mel-spectrogram frames of one generated clip, and of one training segment (AudioLDM: 1024)."""
        return self.transformer.config.latent_length * self.vae_scale_factor

    @property
    def max_audio_length_in_s(self) -> float:
        """Length of the audio the model generates (10.24 s for AudioLDM latents with 256 frames)."""
        return self.transformer.config.latent_length * self.seconds_per_latent_frame

    @property
    def seconds_per_token_column(self) -> float:
        """Audio seconds one latent token covers: `patch_size` latent frames (AudioLDM: 0.16 s; the embedded default
        model: 0.32 s). Audio-input regions are generated at this grid."""
        return self.transformer.config.patch_size * self.seconds_per_latent_frame

    @property
    def num_token_bands(self) -> int:
        """Frequency bands of the latent tokens (`latent_width / patch_size`; AudioLDM: 4, band 0 the lowest)."""
        return self.transformer.config.latent_width // self.transformer.config.patch_size

    @property
    def head_type(self) -> str | None:
        """`"energy"` for an [`ImpactEnergyHead`] pipeline, `"diffusion"` for one with a diffusion head, `None` for a
        text-only pipeline (no head)."""
        if self.energy_head is not None:
            return "energy"
        return "diffusion" if self.diff_head is not None or self.head_scheduler is not None else None

    def _call_defaults_for_head(self) -> dict[str, Any]:
        """`CALL_DEFAULTS` without the settings this pipeline's head has no use for."""
        if self.head_type == "energy":
            return {key: value for key, value in CALL_DEFAULTS.items() if key != "num_diffusion_steps"}
        return dict(CALL_DEFAULTS)

    @property
    def call_defaults(self) -> dict[str, Any]:
        """What a call uses for `num_inference_steps`, `num_diffusion_steps` (diffusion head only) and `guidance_scale`
        when it does not pass them: the model's `recommended_call_settings`, else 32, 100 and 5.0."""
        return {**self._call_defaults_for_head(), **(self.config.recommended_call_settings or {})}

    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        return self._guidance_scale > 1.0

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    def enable_model_cpu_offload(self, gpu_id: int | None = None, device: torch.device | str | None = None):
        """
        [`~diffusers.DiffusionPipeline.enable_model_cpu_offload`]: every model stays on the CPU until it runs. The
        transformer stays on the device for the whole decoding loop (the diffusion head is outside the offload
        chain), and a component without parameters (the non-learned [`GriffinLimVocoder`]) has nothing to offload:
        it is moved to the device once (accelerate's offload hook needs a parameter to know where a model is).
        """
        parameterless = [
            name
            for name, component in self.components.items()
            if isinstance(component, torch.nn.Module) and next(component.parameters(), None) is None
        ]
        self._exclude_from_cpu_offload = parameterless
        self.model_cpu_offload_seq = "->".join(
            name for name in type(self).model_cpu_offload_seq.split("->") if name not in parameterless
        )
        super().enable_model_cpu_offload(gpu_id=gpu_id, device=device)

    # ----------------------------------------------------------------------------------- loading, saving, the Hub
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs):
        """
        Load like [`~diffusers.DiffusionPipeline.from_pretrained`] (a folder written by `save_pretrained`, or a Hub
        repo). A local folder is checked first, so that a missing component folder or a config value of the wrong
        type is reported with the exact file, instead of an error from deep inside a component's constructor.
        """
        local = os.path.isdir(pretrained_model_name_or_path)
        if local:
            _check_pipeline_folder(os.fspath(pretrained_model_name_or_path), set(kwargs))
        if "trust_remote_code" in kwargs:  # the caller decides on the loader files
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        if local:
            folder = os.fspath(pretrained_model_name_or_path)
        else:
            folder = _download_loader_files(os.fspath(pretrained_model_name_or_path), kwargs)
        if folder is None or not _check_loader_files(folder):
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        # The folder's loader files only import this package (checked), so running them runs no foreign code.
        kwargs["trust_remote_code"] = True
        if not local:
            # The snapshot whose files were checked, and its loader file read locally: diffusers would otherwise ask
            # the Hub for the repo's commit to place remote code, which fails offline.
            kwargs["revision"] = os.path.basename(folder)
            kwargs.setdefault("custom_pipeline", os.path.join(folder, LOADER_FILE))
        # diffusers copies loader files into its modules cache at every load and imports them from there: processes
        # loading at once (one per device) must not read each other's half-written copies.
        os.makedirs(HF_MODULES_CACHE, exist_ok=True)
        with FileLock(os.path.join(HF_MODULES_CACHE, ".diffusers_impact.lock")):
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    def create_model_card(
        self,
        repo_id: str | None = None,
        license: str = "other",
        description: str = "",
        training: str = "Not documented yet.",
        evaluation: str = "",
        limitations: str = "Not documented yet.",
        usage: str = "",
        components: str = "",
    ) -> ModelCard:
        """
        The model card of this pipeline: the package's one template (`model_card.md`, rendered by
        `huggingface_hub.ModelCard.from_template`, as diffusers' training scripts do) with diffusers' metadata
        (`populate_model_card`: `library_name: diffusers`, tags) and `pipeline_tag: text-to-audio`.

        Args:
            repo_id (`str`, *optional*): Hub repository id, used as the title and in the usage snippet.
            license (`str`, defaults to `"other"`): Licence identifier for the metadata.
            description, training, evaluation, limitations (`str`): Markdown for those sections (an empty
                `evaluation` leaves its section out).
            usage (`str`, *optional*): Markdown replacing the default usage section (`ImpactPipeline.from_pretrained`
                and the generic `DiffusionPipeline.from_pretrained(..., trust_remote_code=True)`).
            components (`str`, *optional*): Markdown replacing the default table of components (class, parameters).

        Example:

        ```py
        >>> from diffusers_impact.testing_utils import tiny_impact_pipeline

        >>> card = tiny_impact_pipeline().create_model_card("someone/impact-tiny", license="apache-2.0")
        >>> card.data.pipeline_tag, card.data.library_name
        ('text-to-audio', 'diffusers')
        ```
        """
        if not components:
            rows = ["| component | class | parameters |", "|---|---|---|"]
            for name, component in self.components.items():
                if component is not None:
                    size = (
                        sum(p.numel() for p in component.parameters())
                        if isinstance(component, torch.nn.Module)
                        else None
                    )
                    rows.append(f"| `{name}` | `{type(component).__name__}` | {'' if size is None else f'{size:,}'} |")
            components = "\n".join(rows)
        template = resources.files("diffusers_impact").joinpath("model_card.md")
        card = ModelCard.from_template(
            ModelCardData(license=license, pipeline_tag="text-to-audio"),
            template_str=template.read_text(encoding="utf-8"),
            model_name=repo_id.split("/")[-1] if repo_id else "IMPACT text-to-audio pipeline",
            repo_id=repo_id or "path/to/this/pipeline",
            audio_length_in_s=f"{self.max_audio_length_in_s:.2f}",
            sampling_rate=self.vocoder.config.sampling_rate,
            call_settings=", ".join(f"`{key}={value!r}`" for key, value in self.call_defaults.items()),
            head_description=HEAD_DESCRIPTIONS[self.head_type],
            description=description,
            usage=usage,
            components=components,
            training=training,
            evaluation=evaluation,
            limitations=limitations,
        )
        return populate_model_card(card, tags=["audio", "text-to-audio", "impact", "diffusers_impact"])

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        safe_serialization: bool = True,
        variant: str | None = None,
        max_shard_size: int | str | None = None,
        push_to_hub: bool = False,
        **kwargs,
    ):
        """
        Save like [`~diffusers.DiffusionPipeline.save_pretrained`], plus the loader files that let the generic
        `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)` load the folder (see
        `diffusers_registration`) and a `README.md` model card ([`~ImpactPipeline.create_model_card`]) unless the
        folder has one. With `push_to_hub=True` the folder is uploaded to `repo_id` (`token`, `private`,
        `commit_message`, `create_pr` and `model_card` are read from `kwargs`); a card already on the Hub is kept,
        else `model_card` or a new one is uploaded.
        """
        super().save_pretrained(
            save_directory, safe_serialization=safe_serialization, variant=variant, max_shard_size=max_shard_size
        )
        write_loader_files(save_directory)
        card_path = os.path.join(save_directory, "README.md")
        if not push_to_hub:
            if not os.path.exists(card_path):
                self.create_model_card().save(card_path)
            return None
        token = kwargs.pop("token", None)
        repo_id = kwargs.pop("repo_id", None) or os.path.basename(os.path.normpath(save_directory))
        repo_id = create_repo(repo_id, private=kwargs.pop("private", None), token=token, exist_ok=True).repo_id
        try:
            card = ModelCard.load(repo_id, token=token)
        except (EntryNotFoundError, RepositoryNotFoundError):
            card = kwargs.pop("model_card", None) or self.create_model_card(repo_id)
        card.save(card_path)
        return upload_folder(
            repo_id=repo_id,
            folder_path=save_directory,
            token=token,
            commit_message=kwargs.pop("commit_message", None) or "Upload ImpactPipeline",
            create_pr=kwargs.pop("create_pr", False),
        )

    def push_to_hub(
        self,
        repo_id: str,
        commit_message: str | None = None,
        private: bool | None = None,
        token: str | None = None,
        create_pr: bool = False,
        safe_serialization: bool = True,
        variant: str | None = None,
        model_card: ModelCard | None = None,
    ):
        """
        Upload the pipeline to the Hub repository `repo_id`, as `save_pretrained(..., push_to_hub=True)` does: a card
        already on the Hub is kept; otherwise `model_card`, or [`~ImpactPipeline.create_model_card`]'s.
        """
        with tempfile.TemporaryDirectory() as save_directory:
            return self.save_pretrained(
                save_directory,
                safe_serialization=safe_serialization,
                variant=variant,
                push_to_hub=True,
                repo_id=repo_id,
                commit_message=commit_message,
                private=private,
                token=token,
                create_pr=create_pr,
                model_card=model_card,
            )

    # ------------------------------------------------------------------------------------------------ text condition
    @property
    def _pooled_text_source(self) -> str | None:
        """
        `pooled_text_embedding` for a transformer that takes a pooled embedding, else `None`. A text-only pipeline (no
        transformer, see the class docstring) gives the pooled embedding its encoders can make.
        """
        if self.transformer is None:
            source = self.config.pooled_text_embedding
            return None if source == "clap" and self.clap_text_encoder is None else source
        return self.config.pooled_text_embedding if self.transformer.config.pooled_text_embed_dim else None

    def _encode_text(self, prompt: list[str], device: torch.device):
        """Token embeddings `(B, L, text_embed_dim)`, their mask `(B, L)` and the pooled embedding (or `None`)."""
        # The transformer's text length; a text-only pipeline does not know it (a generating pipeline refuses longer
        # `prompt_embeds` with a clear message).
        max_length = self.transformer.config.max_text_length if self.transformer is not None else None
        text_inputs = self.tokenizer(
            prompt, padding="longest", max_length=max_length, truncation=max_length is not None, return_tensors="pt"
        )
        if max_length is not None and max(len(ids) for ids in self.tokenizer(prompt)["input_ids"]) > max_length:
            logger.warning(f"A prompt was truncated to the model's {max_length} text tokens.")
        attention_mask = text_inputs.attention_mask.to(device)
        prompt_embeds = self.text_encoder(text_inputs.input_ids.to(device), attention_mask=attention_mask)
        prompt_embeds = prompt_embeds.last_hidden_state

        pooled_prompt_embeds = None
        pooled_source = self._pooled_text_source
        if pooled_source == "text_encoder_mean":
            # sentence-transformers' mean pooling over the real (unpadded) tokens, unit norm
            weights = attention_mask.unsqueeze(-1).to(prompt_embeds.dtype)
            pooled_prompt_embeds = F.normalize((prompt_embeds * weights).sum(1) / weights.sum(1), dim=-1)
        elif pooled_source == "clap":
            clap_inputs = self.clap_tokenizer(
                prompt,
                padding=True,
                max_length=self.clap_tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            )
            pooled_prompt_embeds = self.clap_text_encoder(
                clap_inputs.input_ids.to(device), attention_mask=clap_inputs.attention_mask.to(device)
            ).text_embeds
            pooled_prompt_embeds = F.normalize(pooled_prompt_embeds, dim=-1)  # unit-norm CLAP embedding, as AudioLDM
        return prompt_embeds, attention_mask.bool(), pooled_prompt_embeds

    def encode_prompt(
        self,
        prompt: str | list[str] | None,
        device: torch.device,
        num_waveforms_per_prompt: int = 1,
        do_classifier_free_guidance: bool = True,
        negative_prompt: str | list[str] | None = None,
        prompt_embeds: torch.Tensor | None = None,
        prompt_attention_mask: torch.Tensor | None = None,
        pooled_prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        negative_prompt_attention_mask: torch.Tensor | None = None,
        negative_pooled_prompt_embeds: torch.Tensor | None = None,
    ):
        r"""
        Encode the prompt (and the negative prompt) into the transformer's text condition.

        Without a negative prompt the unconditional branch of classifier-free guidance uses the model's learned null
        condition, as in training; its embeddings are then returned as `None`.

        Returns:
            `tuple`: `(prompt_embeds, prompt_attention_mask, pooled_prompt_embeds, negative_prompt_embeds,
            negative_prompt_attention_mask, negative_pooled_prompt_embeds)`, each repeated
            `num_waveforms_per_prompt` times; pooled embeddings are `None` for a model without a pooled condition.
        """
        if prompt_embeds is None:
            prompt = [prompt] if isinstance(prompt, str) else prompt
            prompt_embeds, prompt_attention_mask, pooled_prompt_embeds = self._encode_text(prompt, device)
        elif prompt_attention_mask is None:
            prompt_attention_mask = torch.ones(prompt_embeds.shape[:2], dtype=torch.bool, device=device)

        if do_classifier_free_guidance and negative_prompt_embeds is None and negative_prompt is not None:
            batch_size = prompt_embeds.shape[0]
            negative_prompt = [negative_prompt] * batch_size if isinstance(negative_prompt, str) else negative_prompt
            negative_prompt_embeds, negative_prompt_attention_mask, negative_pooled_prompt_embeds = self._encode_text(
                negative_prompt, device
            )
        elif negative_prompt_embeds is not None and negative_prompt_attention_mask is None:
            negative_prompt_attention_mask = torch.ones(
                negative_prompt_embeds.shape[:2], dtype=torch.bool, device=device
            )
        if not do_classifier_free_guidance:
            negative_prompt_embeds = negative_prompt_attention_mask = negative_pooled_prompt_embeds = None

        def repeat(tensor):
            return None if tensor is None else tensor.to(device).repeat_interleave(num_waveforms_per_prompt, dim=0)

        return tuple(
            repeat(tensor)
            for tensor in (
                prompt_embeds,
                prompt_attention_mask,
                pooled_prompt_embeds,
                negative_prompt_embeds,
                negative_prompt_attention_mask,
                negative_pooled_prompt_embeds,
            )
        )

    def _prepare_condition(
        self,
        prompt_embeds,
        prompt_attention_mask,
        pooled_prompt_embeds,
        negative_prompt_embeds,
        negative_prompt_attention_mask,
        negative_pooled_prompt_embeds,
        do_classifier_free_guidance,
    ) -> dict[str, torch.Tensor | None]:
        """Transformer condition inputs for one batched forward: conditional rows first, then unconditional ones."""
        dtype = self.transformer.dtype
        condition = {
            "encoder_hidden_states": prompt_embeds.to(dtype),
            "encoder_attention_mask": prompt_attention_mask.bool(),
            "pooled_projections": None if pooled_prompt_embeds is None else pooled_prompt_embeds.to(dtype),
            "drop_condition": None,
        }
        if not do_classifier_free_guidance:
            return condition
        batch_size = prompt_embeds.shape[0]
        if negative_prompt_embeds is None:  # learned null condition (App. A: ε_uncond "without the text condition")
            condition = {
                name: None if value is None else torch.cat([value, value]) for name, value in condition.items()
            }
            condition["drop_condition"] = torch.arange(2 * batch_size, device=prompt_embeds.device) >= batch_size
            return condition
        # Pad both sequences to one length; padding is masked out of attention, so the result does not change.
        length = max(prompt_embeds.shape[1], negative_prompt_embeds.shape[1])

        def pad(tensor):
            return (
                F.pad(tensor, (0, 0, 0, length - tensor.shape[1]))
                if tensor.ndim == 3
                else F.pad(tensor, (0, length - tensor.shape[1]))
            )

        condition["encoder_hidden_states"] = torch.cat([pad(prompt_embeds), pad(negative_prompt_embeds)]).to(dtype)
        condition["encoder_attention_mask"] = torch.cat(
            [pad(prompt_attention_mask), pad(negative_prompt_attention_mask)]
        ).bool()
        if pooled_prompt_embeds is not None:
            condition["pooled_projections"] = torch.cat([pooled_prompt_embeds, negative_pooled_prompt_embeds]).to(
                dtype
            )
        return condition

    # ----------------------------------------------------------------------------------------------- input checking
    def check_inputs(
        self,
        prompt,
        audio_length_in_s,
        num_inference_steps,
        num_diffusion_steps,
        diffusion_step_annealing,
        guidance_scale,
        guidance_schedule,
        temperature,
        negative_prompt,
        num_waveforms_per_prompt,
        generator,
        latents,
        prompt_embeds,
        prompt_attention_mask,
        pooled_prompt_embeds,
        negative_prompt_embeds,
        negative_prompt_attention_mask,
        negative_pooled_prompt_embeds,
        output_type,
        callback_on_step_end_tensor_inputs,
    ):
        head_type = self.head_type
        missing = [f"`{name}`" for name in GENERATION_COMPONENTS if getattr(self, name) is None]
        if head_type is None:
            missing.append("a head (`diff_head` with `head_scheduler`, or `energy_head`)")
        else:
            missing += [f"`{name}`" for name in HEAD_COMPONENTS[head_type] if getattr(self, name) is None]
        if missing:
            raise ValueError(
                f"This pipeline was built without {', '.join(missing)}: it can encode prompts (`encode_prompt`) but "
                "not generate. Load a pipeline with every component to generate."
            )
        if head_type == "energy":
            not_applicable = {
                "num_diffusion_steps": num_diffusion_steps is not None,
                "diffusion_step_annealing": diffusion_step_annealing != "linear",
                "latents": latents is not None,
            }
            for name, passed in not_applicable.items():
                if passed:
                    raise ValueError(
                        f"`{name}` applies to a diffusion head, but this pipeline has a one-step energy head "
                        f"(ImpactEnergyHead): it makes one head call per decoding iteration from fresh Gaussian noise "
                        f"(drawn from `generator`). Leave `{name}` out."
                    )
        if (prompt is None) == (prompt_embeds is None):
            raise ValueError("Pass exactly one of `prompt` or `prompt_embeds`.")
        if prompt is not None:
            prompts = [prompt] if isinstance(prompt, str) else prompt
            if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
                raise ValueError(f"`prompt` must be a string or a non-empty list of strings, got {prompt!r}.")
            if any(not p.strip() for p in prompts):
                raise ValueError("`prompt` contains an empty string; describe the sound to generate.")
            batch_size = len(prompts)
        else:
            batch_size = self._check_embeds(
                "prompt_embeds", prompt_embeds, prompt_attention_mask, pooled_prompt_embeds
            )
        if negative_prompt is not None and negative_prompt_embeds is not None:
            raise ValueError("Pass at most one of `negative_prompt` or `negative_prompt_embeds`.")
        if negative_prompt is not None:
            negatives = [negative_prompt] if isinstance(negative_prompt, str) else negative_prompt
            if not isinstance(negatives, list) or not all(isinstance(p, str) for p in negatives):
                raise ValueError(f"`negative_prompt` must be a string or a list of strings, got {negative_prompt!r}.")
            if not isinstance(negative_prompt, str) and len(negatives) != batch_size:
                raise ValueError(
                    f"`negative_prompt` has {len(negatives)} entries but `prompt` has {batch_size}; they must match."
                )
        if negative_prompt_embeds is not None:
            negative_batch = self._check_embeds(
                "negative_prompt_embeds",
                negative_prompt_embeds,
                negative_prompt_attention_mask,
                negative_pooled_prompt_embeds,
            )
            if negative_batch != batch_size:
                raise ValueError(
                    f"`negative_prompt_embeds` has batch size {negative_batch} but the prompts have {batch_size}."
                )
        needs_text_encoding = prompt is not None or negative_prompt is not None
        if needs_text_encoding and (self.text_encoder is None or self.tokenizer is None):
            raise ValueError(
                "This pipeline was loaded without a `text_encoder`/`tokenizer` (its folder does not contain them): "
                "pass them to `from_pretrained(..., text_encoder=..., tokenizer=...)`, or pass `prompt_embeds`. The "
                "embedded default model loads with `diffusers_impact.load_default_pipeline()`."
            )
        if needs_text_encoding and self._pooled_text_source == "clap" and self.clap_text_encoder is None:
            raise ValueError(
                "This transformer takes a pooled (CLAP) text embedding but the pipeline has no `clap_text_encoder`: "
                "load one or pass `prompt_embeds` with `pooled_prompt_embeds`."
            )
        integer_arguments = [
            ("num_inference_steps", num_inference_steps),
            ("num_waveforms_per_prompt", num_waveforms_per_prompt),
        ]
        if head_type == "energy":
            pass  # no head steps (refused above)
        elif isinstance(num_diffusion_steps, (tuple, list)):  # (first, last): diffusion step annealing
            if len(num_diffusion_steps) != 2:
                raise ValueError(
                    f"`num_diffusion_steps` must be a positive integer or a pair (first, last), got {num_diffusion_steps!r}."
                )
            integer_arguments += [("num_diffusion_steps", steps) for steps in num_diffusion_steps]
        else:
            integer_arguments.append(("num_diffusion_steps", num_diffusion_steps))
        for name, value in integer_arguments:
            if not _is_integer(value) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {_describe(value)}.")
        if diffusion_step_annealing not in DIFFUSION_STEP_ANNEALING_SHAPES:
            raise ValueError(
                f"`diffusion_step_annealing` must be one of {DIFFUSION_STEP_ANNEALING_SHAPES}, got "
                f"{_describe(diffusion_step_annealing)}."
            )
        if diffusion_step_annealing != "linear" and not isinstance(num_diffusion_steps, (tuple, list)):
            raise ValueError(
                f"`diffusion_step_annealing={diffusion_step_annealing!r}` shapes an annealed step count: pass "
                f"`num_diffusion_steps` as a pair (first, last), e.g. (50, 5), not {_describe(num_diffusion_steps)}."
            )
        if not _is_finite_real(guidance_scale) or guidance_scale < 1.0:
            raise ValueError(
                f"`guidance_scale` must be a finite number ≥ 1.0 (1.0 disables guidance), got {_describe(guidance_scale)}."
            )
        if guidance_schedule is not None and guidance_schedule not in GUIDANCE_SCHEDULES:
            raise ValueError(f"`guidance_schedule` must be one of {GUIDANCE_SCHEDULES}, got {guidance_schedule!r}.")
        if not _is_finite_real(temperature) or temperature < 0:
            raise ValueError(f"`temperature` must be a finite number ≥ 0, got {_describe(temperature)}.")
        if (
            head_type == "diffusion"
            and temperature != 1.0
            and "temperature" not in inspect.signature(self.head_scheduler.step).parameters
        ):
            raise ValueError(
                f"`temperature` is not supported by {type(self.head_scheduler).__name__}; use ImpactDiffHeadScheduler "
                "or temperature=1.0."
            )
        if audio_length_in_s is not None and not (_is_finite_real(audio_length_in_s) and audio_length_in_s > 0):
            raise ValueError(
                f"`audio_length_in_s` must be a positive number of seconds (above the model's "
                f"{self.max_audio_length_in_s:.2f} s it is generated in overlapping windows), got "
                f"{_describe(audio_length_in_s)}."
            )
        total = batch_size * num_waveforms_per_prompt
        generators = generator if isinstance(generator, list) else [generator]
        if generator is not None and not all(isinstance(g, torch.Generator) for g in generators):
            raise ValueError(
                f"`generator` must be a torch.Generator or a list of them (e.g. `torch.Generator().manual_seed(42)`), "
                f"got {_describe(generator)}."
            )
        if isinstance(generator, list) and len(generator) != total:
            raise ValueError(
                f"`generator` is a list of {len(generator)} generators but {total} waveforms are requested "
                f"({batch_size} prompts × num_waveforms_per_prompt={num_waveforms_per_prompt})."
            )
        if latents is not None:
            self._check_latents("`latents`", latents, total)
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"`output_type` must be one of {OUTPUT_TYPES}, got {output_type!r}.")
        unknown = [k for k in callback_on_step_end_tensor_inputs or [] if k not in self._callback_tensor_inputs]
        if unknown:
            raise ValueError(
                f"`callback_on_step_end_tensor_inputs` has {unknown}; allowed are {self._callback_tensor_inputs}."
            )

    def _check_latents(self, name: str, latents, batch_size: int) -> None:
        """`latents` (given, or returned by a callback): a finite float tensor of the model's latent shape."""
        expected = self._latent_shape(batch_size)
        if not isinstance(latents, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor of shape {expected}, got {_describe(latents)}.")
        if tuple(latents.shape) != expected:
            raise ValueError(f"{name} must have shape {expected}, got {tuple(latents.shape)}.")
        if not latents.is_floating_point() or not torch.isfinite(latents).all():
            raise ValueError(
                f"{name} must hold finite floating-point values (dtype {latents.dtype}, or NaN/inf found)."
            )

    def _check_embeds(self, name, embeds, attention_mask, pooled_embeds) -> int:
        """Validate one set of precomputed text embeddings and return its batch size."""
        config = self.transformer.config
        prefix = name.removesuffix("prompt_embeds")
        for argument, value in (
            (name, embeds),
            (f"{prefix}prompt_attention_mask", attention_mask),
            (f"{prefix}pooled_prompt_embeds", pooled_embeds),
        ):
            if value is not None and not isinstance(value, torch.Tensor):
                raise ValueError(f"`{argument}` must be a torch.Tensor, got {_describe(value)}.")
        for argument, value in ((name, embeds), (f"{prefix}pooled_prompt_embeds", pooled_embeds)):
            if value is not None and not torch.isfinite(value).all():
                raise ValueError(f"`{argument}` contains NaN or infinite values.")
        if embeds.ndim != 3 or embeds.shape[-1] != config.text_embed_dim or embeds.shape[1] > config.max_text_length:
            raise ValueError(
                f"`{name}` must have shape (batch, ≤{config.max_text_length}, {config.text_embed_dim}), "
                f"got {tuple(embeds.shape)}."
            )
        if attention_mask is not None and tuple(attention_mask.shape) != tuple(embeds.shape[:2]):
            raise ValueError(
                f"`{prefix}prompt_attention_mask` must have shape {tuple(embeds.shape[:2])}, got {tuple(attention_mask.shape)}."
            )
        expected_pooled = None if not config.pooled_text_embed_dim else (embeds.shape[0], config.pooled_text_embed_dim)
        got_pooled = None if pooled_embeds is None else tuple(pooled_embeds.shape)
        if got_pooled != expected_pooled:
            raise ValueError(f"`{prefix}pooled_prompt_embeds` must have shape {expected_pooled}, got {got_pooled}.")
        return embeds.shape[0]

    # ------------------------------------------------------------------------------------------------ audio input
    def _check_audio_front_end(self) -> None:
        """Audio input is encoded with AudioLDM's mel front-end (`diffusers_impact.audio.mel_spectrogram`)."""
        expected = (SAMPLING_RATE, HOP_LENGTH, N_MELS)
        found = vocoder_front_end(self.vocoder)
        if found != expected:
            raise ValueError(
                f"`audio` is encoded with AudioLDM's mel front-end (sampling rate, hop, mel bins) = {expected}, but "
                f"this pipeline's vocoder works at {found}: it cannot take audio input."
            )

    def check_audio_inputs(
        self,
        audio,
        audio_sampling_rate,
        mask_start_s,
        mask_end_s,
        mask_bands,
        strength,
        window_overlap_s,
        audio_length_in_s,
        batch_size: int,
        latents,
        output_type: str,
    ) -> tuple[np.ndarray | None, float, list[float], list[float], list[int] | None]:
        """
        Validate the audio-input arguments of `__call__` (and long-form generation's), and return the input as float64
        waveforms `(batch_size, samples)` at the pipeline's sampling rate (`None` without audio), the output length in
        seconds, the regions' starts and ends, and the bands to generate (`None`: all).
        """
        needs_audio = {
            "audio_sampling_rate": audio_sampling_rate,
            "mask_start_s": mask_start_s,
            "mask_end_s": mask_end_s,
            "mask_bands": mask_bands,
            "strength": strength,
        }
        if audio is None:
            passed = [f"`{name}`" for name, value in needs_audio.items() if value is not None]
            if passed:
                raise ValueError(f"{', '.join(passed)} apply to audio input: pass `audio` too.")
        long_form = audio_length_in_s is not None and audio_length_in_s > self.max_audio_length_in_s + 1e-9
        if window_overlap_s is not None:
            columns = self.transformer.config.latent_length // self.transformer.config.patch_size
            column = self.seconds_per_token_column
            if (
                not _is_finite_real(window_overlap_s)
                or not column <= window_overlap_s <= (columns - 1) * column + 1e-9
            ):
                raise ValueError(
                    f"`window_overlap_s` must be between one token ({column:.2f} s) and the model's length less one "
                    f"token ({(columns - 1) * column:.2f} s), got {_describe(window_overlap_s)}."
                )
        if long_form and latents is not None:
            raise ValueError(
                f"`latents` are the head's starting noise for one {self.max_audio_length_in_s:.2f} s window; "
                f"audio_length_in_s={audio_length_in_s} is generated in several windows. Leave `latents` out."
            )
        if long_form and output_type == "latent":
            raise ValueError(
                f"`output_type='latent'` returns one {self.max_audio_length_in_s:.2f} s window of latents; for "
                f"audio_length_in_s={audio_length_in_s} use 'np' or 'pt'."
            )
        if audio is None:
            return None, float(audio_length_in_s or self.max_audio_length_in_s), [], [], None

        self._check_audio_front_end()
        clips = list(audio) if isinstance(audio, (list, tuple)) else [audio]
        if not clips:
            raise ValueError("`audio` is an empty list: pass a waveform, or one per prompt.")
        waveforms = []
        for index, clip in enumerate(clips):
            name = "`audio`" if len(clips) == 1 and not isinstance(audio, (list, tuple)) else f"`audio[{index}]`"
            if isinstance(clip, torch.Tensor):
                clip = clip.detach().cpu().double().numpy() if clip.is_floating_point() else clip.cpu().numpy()
            if not isinstance(clip, np.ndarray) or not np.issubdtype(clip.dtype, np.floating):
                raise ValueError(
                    f"{name} must be a floating-point NumPy array or torch tensor of samples in [-1, 1], got "
                    f"{_describe(clip)}."
                )
            if clip.ndim != 1:
                raise ValueError(
                    f"{name} must be mono, a 1-D waveform (one per prompt in a list), got shape {clip.shape}. Mix a "
                    "multi-channel recording down yourself, e.g. `audio.mean(axis=0)` for (channels, samples)."
                )
            if clip.size == 0:
                raise ValueError(f"{name} holds no samples.")
            if not np.isfinite(clip).all():
                raise ValueError(f"{name} contains NaN or infinite samples.")
            waveforms.append(clip.astype(np.float64))
        if isinstance(audio, (list, tuple)) and len(waveforms) != batch_size:
            raise ValueError(
                f"`audio` is a list of {len(waveforms)} waveforms but there are {batch_size} prompts: pass one "
                "waveform for all prompts, or one per prompt."
            )
        if len({len(waveform) for waveform in waveforms}) > 1:
            raise ValueError(
                f"The waveforms in `audio` have different lengths ({[len(w) for w in waveforms]} samples): one call "
                "generates the same regions for all, so pad or crop them to one length, or make one call per length."
            )
        if audio_sampling_rate is not None:
            if not _is_integer(audio_sampling_rate) or audio_sampling_rate < 1:
                raise ValueError(
                    f"`audio_sampling_rate` must be a positive integer (Hz), got {_describe(audio_sampling_rate)}."
                )
            waveforms = [resample(waveform, int(audio_sampling_rate), SAMPLING_RATE) for waveform in waveforms]
        waveforms = np.stack(waveforms)
        if len(waveforms) == 1:
            waveforms = np.repeat(waveforms, batch_size, axis=0)
        input_seconds = waveforms.shape[1] / SAMPLING_RATE
        if audio_length_in_s is None:
            audio_length_in_s = input_seconds
        elif audio_length_in_s < input_seconds - 1e-9:
            raise ValueError(
                f"`audio` is {input_seconds:.2f} s long, longer than audio_length_in_s={audio_length_in_s}: crop the "
                f"audio, or ask for at least {input_seconds:.2f} s (more continues it)."
            )

        if (mask_start_s is None) != (mask_end_s is None):
            raise ValueError("Pass both `mask_start_s` and `mask_end_s` (the regions to generate), or neither.")
        starts, ends = [], []
        if mask_start_s is not None:
            starts = list(mask_start_s) if isinstance(mask_start_s, (list, tuple)) else [mask_start_s]
            ends = list(mask_end_s) if isinstance(mask_end_s, (list, tuple)) else [mask_end_s]
            if len(starts) != len(ends) or not starts:
                raise ValueError(
                    f"`mask_start_s` and `mask_end_s` must have the same number of entries (one per region), got "
                    f"{len(starts)} and {len(ends)}."
                )
            for start, end in zip(starts, ends):
                if not (_is_finite_real(start) and _is_finite_real(end)):
                    raise ValueError(
                        f"Region starts and ends must be finite numbers of seconds, got {start!r}, {end!r}."
                    )
                if not 0 <= start < end <= input_seconds + 1e-9:
                    raise ValueError(
                        f"Region {start}–{end} s is not inside the audio (0–{input_seconds:.2f} s) with start < end. "
                        "To generate after the audio, ask for a longer `audio_length_in_s` instead."
                    )
            starts, ends = [float(start) for start in starts], [float(end) for end in ends]
        if mask_bands is not None:
            bands = list(mask_bands) if isinstance(mask_bands, (list, tuple)) else [mask_bands]
            num_bands = self.num_token_bands
            if not bands or not all(_is_integer(band) and 0 <= band < num_bands for band in bands):
                raise ValueError(
                    f"`mask_bands` must be band indices in [0, {num_bands}) (0 the lowest; this model's tokens have "
                    f"{num_bands} frequency bands), got {mask_bands!r}."
                )
            if len(set(bands)) != len(bands):
                raise ValueError(f"`mask_bands` lists a band twice: {mask_bands!r}.")
            mask_bands = sorted(int(band) for band in bands)
        if strength is not None and not (_is_finite_real(strength) and 0 < strength <= 1):
            raise ValueError(
                f"`strength` must be in (0, 1] (the fraction of the input's tokens generated anew), got "
                f"{_describe(strength)}."
            )
        continues = audio_length_in_s > input_seconds + 1e-9
        if not (starts or mask_bands is not None or strength is not None or continues):
            raise ValueError(
                "With `audio` alone there is nothing to generate: pass `mask_start_s`/`mask_end_s` (inpainting), "
                "`mask_bands` (frequency inpainting), `strength` (variations), or an `audio_length_in_s` longer than "
                f"the audio's {input_seconds:.2f} s (continuation)."
            )
        return waveforms, float(audio_length_in_s), starts, ends, mask_bands

    def encode_mel_spectrogram(self, mel_spectrogram: torch.Tensor) -> torch.Tensor:
        """Log-mel spectrograms `(B, 1, frames, mels)` → VAE latents `(B, C, T, F)`, the posterior mean × scaling
        factor (the inverse of [`~ImpactPipeline.decode_latents`], as training encodes)."""
        mel_spectrogram = mel_spectrogram.to(device=self.vae.device, dtype=self.vae.dtype)
        latents = [self.vae.encode(batch).latent_dist.mode() for batch in self._decoding_batches(mel_spectrogram)]
        return torch.cat(latents).float() * self.vae.config.scaling_factor

    # ------------------------------------------------------------------------------------------- latents and audio
    def _latent_shape(self, batch_size: int) -> tuple[int, int, int, int]:
        config = self.transformer.config
        return (batch_size, config.latent_channels, config.latent_length, config.latent_width)

    def prepare_latents(self, batch_size, generator, device, latents=None) -> torch.Tensor:
        """Initial Gaussian noise x_K of the diffusion head for every latent position, as VAE latents (float32)."""
        if latents is None:
            latents = randn_tensor(
                self._latent_shape(batch_size), generator=generator, device=device, dtype=torch.float32
            )
        return latents.to(device=device, dtype=torch.float32) * self.head_scheduler.init_noise_sigma

    def prepare_energy_noise(self, batch_size, generator, device) -> torch.Tensor:
        """The energy head's standard Gaussian input noise, one vector per latent token: `(B, num_tokens,
        noise_channels)`, float32 (drawn per sample, so that a list of generators gives each waveform its own)."""
        shape = (batch_size, self.transformer.num_tokens, self.energy_head.config.noise_channels)
        return randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)

    @staticmethod
    def _decoding_batches(values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """
        The batches the VAE and the vocoder decode at once: the whole batch on an accelerator, one clip at a time on
        the CPU, where a batch's activations leave the caches (measured at batch 8 on 2 cores: VAE 26.4 s and
        HiFi-GAN 56.1 s, against 8 × 2.8 s and 8 × 4.8 s one clip at a time; `benchmarks/README.md`).
        """
        return values.split(1) if values.device.type == "cpu" else (values,)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """VAE latents `(B, C, T, F)` → log-mel spectrograms `(B, 1, 4T, 4F)`."""
        latents = latents.to(self.vae.dtype) / self.vae.config.scaling_factor
        # channels_last spares the convolutions a layout conversion per layer (10.24 s on 2 CPU cores: 2.89 → 2.57 s).
        latents = latents.contiguous(memory_format=torch.channels_last)
        mel_spectrograms = [self.vae.decode(batch).sample for batch in self._decoding_batches(latents)]
        return torch.cat(mel_spectrograms).contiguous()

    def mel_spectrogram_to_waveform(self, mel_spectrogram: torch.Tensor) -> torch.Tensor:
        """Log-mel spectrograms `(B, 1, frames, mels)` → float32 waveforms `(B, samples)` on the CPU."""
        if mel_spectrogram.dim() == 4:
            mel_spectrogram = mel_spectrogram.squeeze(1)
        mel_spectrogram = mel_spectrogram.to(self.vocoder.dtype)
        waveforms = [self.vocoder(batch) for batch in self._decoding_batches(mel_spectrogram)]
        return torch.cat(waveforms).cpu().float()

    def _head_takes_learned_variance(self) -> bool:
        """Whether the head scheduler consumes MAR's learned-range variance (ours and DDPM `learned_range` do)."""
        if not self.diff_head.config.learn_sigma:
            return False
        if isinstance(self.head_scheduler, ImpactDiffHeadScheduler):
            return True
        return (
            isinstance(self.head_scheduler, DDPMScheduler)
            and self.head_scheduler.config.variance_type == "learned_range"
        )

    def sample_tokens(
        self,
        hidden_states: torch.Tensor,
        noise: torch.Tensor,
        guidance_scale: float,
        num_diffusion_steps: int,
        step_kwargs: dict[str, Any],
        head_scheduler: SchedulerMixin | None = None,
    ) -> torch.Tensor:
        """
        Run the diffusion head's sampler (Eq. 3) on the tokens generated this iteration: one call per decoding
        iteration, and the place to hook for timing or inspecting the head (the benchmark does).

        `hidden_states` is `(B, n, D)`, or `(2B, n, D)` with the unconditional rows second when guiding; `noise` is the
        initial sample `(B, n, token_dim)`. Guidance (Eq. 4) acts on ε only; the variance comes from the conditional
        branch (MAR). The state is kept in float32 and as `(B, n · token_dim)` so that per-sample generators apply.
        `head_scheduler` is the sampler to run (`__call__` passes its own copy of `self.head_scheduler`, so that
        concurrent calls do not share scheduler state); defaults to `self.head_scheduler`.
        """
        head_scheduler = self.head_scheduler if head_scheduler is None else head_scheduler
        batch_size, num_new_tokens, token_dim = noise.shape
        do_guidance = hidden_states.shape[0] == 2 * batch_size
        condition = hidden_states.reshape(-1, hidden_states.shape[-1]).to(self.diff_head.dtype)
        takes_variance = self._head_takes_learned_variance()
        head_scheduler.set_timesteps(num_diffusion_steps, device=noise.device)  # also resets multistep state
        sample = noise.reshape(batch_size, num_new_tokens * token_dim)
        for timestep in head_scheduler.timesteps:
            model_input = head_scheduler.scale_model_input(sample, timestep).reshape(-1, token_dim)
            if do_guidance:
                model_input = torch.cat([model_input, model_input])
            output = self.diff_head(model_input.to(self.diff_head.dtype), timestep, condition, return_dict=False)[0]
            output = output.float()
            epsilon, variance = output[:, :token_dim], output[:, token_dim:]
            if do_guidance:  # Eq. 4: ε = ε_uncond + β(t) · (ε_cond − ε_uncond)
                epsilon_cond, epsilon_uncond = epsilon.chunk(2)
                epsilon = epsilon_uncond + guidance_scale * (epsilon_cond - epsilon_uncond)
                variance = variance.chunk(2)[0]
            model_output = epsilon.reshape(batch_size, -1)
            if takes_variance:
                model_output = torch.cat([model_output, variance.reshape(batch_size, -1)], dim=1)
            sample = head_scheduler.step(model_output, timestep, sample, **step_kwargs).prev_sample
        return sample.reshape(batch_size, num_new_tokens, token_dim)

    def sample_tokens_one_step(
        self, hidden_states: torch.Tensor, noise: torch.Tensor, guidance_scale: float, temperature: float = 1.0
    ) -> torch.Tensor:
        """
        The energy head's tokens for this iteration in one call (AudioDEAR): the hook for timing or inspecting the
        one-step head, as `sample_tokens` is for the diffusion head.

        `hidden_states` is `(B, n, D)`, or `(2B, n, D)` with the unconditional rows second when guiding; `noise` is
        `(B, n, noise_channels)`. Guidance acts on the hidden vectors before the head (EAR):
        z = z_uncond + β · (z_cond − z_uncond), computed as `torch.lerp`, which gives z_cond exactly at β = 1.
        Returns `(B, n, token_dim)` in float32.
        """
        batch_size, num_new_tokens, noise_channels = noise.shape
        if hidden_states.shape[0] == 2 * batch_size:
            hidden_cond, hidden_uncond = hidden_states.float().chunk(2)
            hidden_states = torch.lerp(hidden_uncond, hidden_cond, guidance_scale)
        dtype = self.energy_head.dtype
        condition = hidden_states.reshape(-1, hidden_states.shape[-1]).to(dtype)
        tokens = self.energy_head(
            condition, noise.reshape(-1, noise_channels).to(dtype), temperature=temperature, return_dict=False
        )[0]
        return tokens.float().reshape(batch_size, num_new_tokens, -1)

    # ------------------------------------------------------------------------------------------ decoding in windows
    def _plan_tokens(
        self,
        input_waveforms,
        audio_length_in_s,
        mask_start_s,
        mask_end_s,
        mask_bands,
        strength,
        window_overlap_s,
        batch_size,
    ) -> dict[str, Any]:
        """
        The call's token canvas: `num_columns` token columns covering `audio_length_in_s` (at least one window), the
        windows that generate them, and for audio input its level, mel spectrogram and the tokens selected by
        the regions and bands. `tokens`/`fixed` hold the tokens decided so far (given or generated by a window).
        """
        config, device = self.transformer.config, self._execution_device
        window_columns, num_bands = config.latent_length // config.patch_size, self.num_token_bands
        frames_per_column = config.patch_size * self.vae_scale_factor
        _, hop_length, _ = vocoder_front_end(self.vocoder)
        samples_per_column = frames_per_column * hop_length
        num_columns = max(window_columns, math.ceil(audio_length_in_s / self.seconds_per_token_column - 1e-9))
        if window_overlap_s is None:  # half a window: each window sees as much context as it generates
            overlap_columns = window_columns // 2
        else:
            overlap_columns = round(window_overlap_s / self.seconds_per_token_column)
        token_dim = config.latent_channels * config.patch_size**2
        plan = {
            "num_columns": num_columns,
            "window_columns": window_columns,
            "num_bands": num_bands,
            "frames_per_column": frames_per_column,
            "window_starts": window_starts(num_columns, window_columns, overlap_columns),
            "tokens": torch.zeros(batch_size, num_columns * num_bands, token_dim, device=device),
            "fixed": torch.zeros(batch_size, num_columns * num_bands, dtype=torch.bool, device=device),
            "input": None,
        }
        if input_waveforms is None:
            return plan
        # The model was trained on clips centred and peak-normalised to 0.5 (`prepare_segment`): the input is encoded
        # at that level, and the generated audio is brought back to the input's level and offset.
        offsets = input_waveforms.mean(axis=1, keepdims=True)
        peaks = np.abs(input_waveforms - offsets).max(axis=1, keepdims=True)
        gains = np.where(peaks > 0, PEAK_AMPLITUDE / np.where(peaks > 0, peaks, 1.0), 1.0)
        canvas = np.zeros((batch_size, num_columns * samples_per_column))
        canvas[:, : input_waveforms.shape[1]] = (input_waveforms - offsets) * gains
        input_columns = input_waveforms.shape[1] // samples_per_column  # columns the input covers entirely
        # The selection: the regions' columns (all columns without regions) × the bands (all without `mask_bands`);
        # nothing for a plain continuation (no regions, bands or strength).
        if mask_start_s:
            time_selected = region_columns(mask_start_s, mask_end_s, self.seconds_per_token_column, num_columns)
        else:
            time_selected = np.full(num_columns, mask_bands is not None or strength is not None)
        band_selected = np.zeros(num_bands, dtype=bool)
        band_selected[mask_bands if mask_bands is not None else slice(None)] = True
        plan["input"] = {
            "waveforms": input_waveforms,
            "offsets": offsets,
            "gains": gains,
            "mel": mel_spectrogram(torch.from_numpy(canvas).float(), num_frames=num_columns * frames_per_column),
            "covered": np.arange(num_columns) < input_columns,
            "selected": time_selected[:, None] & band_selected[None, :],
            "regions": list(zip(mask_start_s, mask_end_s)),
            "bands": mask_bands,
        }
        return plan

    def _window_tokens(self, plan, window_start, strength, generator, device) -> tuple[torch.Tensor, torch.Tensor]:
        """
        The tokens of the window starting at column `window_start` and which of them are given: those an earlier
        window decided, and the input's tokens outside the selection (regions × bands). With `strength`, of the
        selected input tokens not yet decided a random `strength` fraction (at least one) is generated and the rest
        is given too, drawn from `generator` per sample.
        """
        window_columns, num_bands = plan["window_columns"], plan["num_bands"]
        window = slice(window_start * num_bands, (window_start + window_columns) * num_bands)
        tokens, given = plan["tokens"][:, window].clone(), plan["fixed"][:, window].clone()
        audio_input = plan["input"]
        if audio_input is None:
            return tokens, given
        columns = slice(window_start, window_start + window_columns)
        covered = np.repeat(audio_input["covered"][columns], num_bands)
        if not covered.any():  # a window past the input's end (long continuation): nothing to encode
            return tokens, given
        first_frame = window_start * plan["frames_per_column"]
        mel = audio_input["mel"][:, :, first_frame : first_frame + self.num_mel_frames]
        input_tokens = self.transformer.patchify(self.encode_mel_spectrogram(mel)).to(device)
        selected = audio_input["selected"][columns].reshape(-1)
        from_input = torch.from_numpy(covered & ~selected).to(device).expand_as(given).clone()
        candidates = torch.from_numpy(covered & selected).to(device) & ~given[0]
        num_candidates = int(candidates.sum())
        num_generated = 0 if strength is None else max(1, round(strength * num_candidates))
        if 0 < num_generated < num_candidates:  # strength 1 draws nothing: exactly text to audio
            keys = randn_tensor((tokens.shape[0], num_candidates), generator=generator, device=device)
            kept = torch.ones_like(keys, dtype=torch.bool).scatter_(1, keys.argsort(dim=1)[:, :num_generated], False)
            from_input[:, candidates] = kept
        new = from_input & ~given
        tokens[new] = input_tokens[new]
        return tokens, given | new

    @staticmethod
    def _store_window(plan, window_start, tokens) -> None:
        """Write a decoded window into the canvas: its tokens are given to the windows that overlap it."""
        num_bands = plan["num_bands"]
        window = slice(window_start * num_bands, (window_start + plan["window_columns"]) * num_bands)
        plan["tokens"][:, window] = tokens
        plan["fixed"][:, window] = True

    def _decode_window(
        self,
        tokens,
        given,
        condition,
        num_inference_steps,
        num_diffusion_steps,
        diffusion_step_annealing,
        guidance_schedule,
        temperature,
        generator,
        latents,
        callback_on_step_end,
        callback_on_step_end_tensor_inputs,
        show_progress,
    ) -> torch.Tensor:
        """
        Generate one window's tokens (§3.2): `tokens` `(B, N, token_dim)` hold the given tokens where `given` is `True`
        (`None`: nothing given, text to audio), which stay visible from the first iteration; the T iterations
        generate the others in a random order.
        """
        batch_size, device = tokens.shape[0], tokens.device
        do_classifier_free_guidance = self.do_classifier_free_guidance
        # This call's own scheduler state: concurrent calls of one pipeline object must not share it.
        scheduler, head_scheduler = copy.deepcopy(self.scheduler), copy.deepcopy(self.head_scheduler)
        num_tokens = self.transformer.num_tokens
        num_to_generate = None if given is None else num_tokens - int(given[0].sum())
        scheduler.set_timesteps(num_inference_steps, num_tokens, device=device, num_tokens_to_generate=num_to_generate)
        timesteps = scheduler.timesteps
        self._num_timesteps = len(timesteps)
        # The random orders (App. D.1) and the head's noise: the diffusion head's initial sample per token, or the
        # energy head's input noise per token
        one_step_head = self.head_type == "energy"
        if one_step_head:
            head_noise = self.prepare_energy_noise(batch_size, generator, device)
        else:
            diffusion_steps = annealed_diffusion_steps(num_diffusion_steps, len(timesteps), diffusion_step_annealing)
            head_noise = self.transformer.patchify(self.prepare_latents(batch_size, generator, device, latents))
            step_parameters = inspect.signature(head_scheduler.step).parameters
            step_kwargs = {"generator": generator} if "generator" in step_parameters else {}
            if "temperature" in step_parameters:
                step_kwargs["temperature"] = temperature
        orders = scheduler.sample_orders(batch_size, generator=generator, device=device, given=given)
        copies = 2 if do_classifier_free_guidance else 1

        with self.progress_bar(total=len(timesteps)) if show_progress else contextlib.nullcontext() as progress_bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                mask = scheduler.mask_before(i, orders)
                # One transformer forward for the conditional and unconditional branches together.
                hidden_states = self.transformer(
                    tokens.to(self.transformer.dtype).repeat(copies, 1, 1),
                    mask.repeat(copies, 1),
                    **condition,
                    return_dict=False,
                )[0]
                positions = scheduler.positions_to_predict(i, orders)
                selected_hidden = torch.gather(
                    hidden_states, 1, positions.repeat(copies, 1).unsqueeze(-1).expand(-1, -1, hidden_states.shape[-1])
                )
                noise = torch.gather(head_noise, 1, positions.unsqueeze(-1).expand(-1, -1, head_noise.shape[-1]))
                step_guidance = scheduler.guidance_scale_at(i, self._guidance_scale, guidance_schedule)
                if one_step_head:
                    new_tokens = self.sample_tokens_one_step(selected_hidden, noise, step_guidance, temperature)
                else:
                    new_tokens = self.sample_tokens(
                        selected_hidden, noise, step_guidance, diffusion_steps[i], step_kwargs, head_scheduler
                    )
                tokens = scheduler.step(new_tokens, t, tokens, orders).prev_sample

                if callback_on_step_end is not None:
                    callback_kwargs = {"latents": self.transformer.unpatchify(tokens)}
                    callback_kwargs = {k: callback_kwargs[k] for k in callback_on_step_end_tensor_inputs}
                    callback_outputs = callback_on_step_end(self, i, t, callback_kwargs)
                    if not isinstance(callback_outputs, dict):
                        raise TypeError(
                            f"`callback_on_step_end` must return a dict (the `callback_kwargs` it was given, or {{}}), "
                            f"got {_describe(callback_outputs)} at step {i}."
                        )
                    if "latents" in callback_outputs:
                        new_latents = callback_outputs["latents"]
                        self._check_latents(
                            "the `latents` returned by `callback_on_step_end`", new_latents, tokens.shape[0]
                        )
                        tokens = self.transformer.patchify(new_latents.to(device=tokens.device, dtype=tokens.dtype))
                    if not _is_finite_real(self._guidance_scale):
                        raise ValueError(
                            f"`callback_on_step_end` set the guidance scale to {_describe(self._guidance_scale)} at "
                            f"step {i}; it must be a finite number."
                        )
                if progress_bar is not None:
                    progress_bar.update()
        return tokens

    def _splice_input(self, plan, audio: torch.Tensor, strength) -> torch.Tensor:
        """
        The generated waveforms `(B, samples)` with the input put back: brought to the input's level and offset, the
        input's kept frequency bands restored (`mask_bands`, STFT splice), and its samples spliced back exactly outside
        the regions (equal-power crossfades of `CROSSFADE_S` inside the regions, or over the input's last
        `CROSSFADE_S` where it is continued). Variations (`strength` without regions) re-synthesise the whole input.
        """
        audio_input = plan["input"]
        waveforms, sampling_rate = audio_input["waveforms"], self.vocoder.config.sampling_rate
        generated = audio.double().numpy() / audio_input["gains"] + audio_input["offsets"]
        num_samples, input_samples = generated.shape[1], waveforms.shape[1]
        crossfade = round(CROSSFADE_S * sampling_rate)
        if audio_input["bands"] is not None:
            mel_bins = self.transformer.config.latent_width * self.vae_scale_factor
            kept_mel_bins = np.ones(mel_bins, dtype=bool)
            bins_per_band = mel_bins // plan["num_bands"]
            for band in audio_input["bands"]:
                kept_mel_bins[band * bins_per_band : (band + 1) * bins_per_band] = False
            keep = band_keep_weights(kept_mel_bins, mel_filterbank(), sampling_rate)
            band_spliced = splice_bands(waveforms, generated, keep)
            # Within the input: its kept bands; after it (continuation): all generated.
            generated = splice_input(band_spliced, generated, input_weights(num_samples, input_samples, [], crossfade))
        spans = [(round(start * sampling_rate), round(end * sampling_rate)) for start, end in audio_input["regions"]]
        if not spans and (audio_input["bands"] is not None or strength is not None):
            spans = [(0, input_samples)]
        weights = input_weights(num_samples, input_samples, spans, crossfade)
        return torch.from_numpy(splice_input(waveforms, generated, weights)).float()

    # ------------------------------------------------------------------------------------------------------- call
    @torch.no_grad()
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        audio_length_in_s: float | None = None,
        num_inference_steps: int | None = None,
        num_diffusion_steps: int | tuple[int, int] | None = None,
        diffusion_step_annealing: str = "linear",
        guidance_scale: float | None = None,
        guidance_schedule: str | None = None,
        temperature: float = 1.0,
        negative_prompt: str | list[str] | None = None,
        num_waveforms_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        prompt_attention_mask: torch.Tensor | None = None,
        pooled_prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        negative_prompt_attention_mask: torch.Tensor | None = None,
        negative_pooled_prompt_embeds: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end: Callable[[Any, int, int, dict], dict]
        | PipelineCallback
        | MultiPipelineCallbacks
        | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],
        audio: np.ndarray | torch.Tensor | list[np.ndarray | torch.Tensor] | None = None,
        audio_sampling_rate: int | None = None,
        mask_start_s: float | list[float] | None = None,
        mask_end_s: float | list[float] | None = None,
        mask_bands: int | list[int] | None = None,
        strength: float | None = None,
        window_overlap_s: float | None = None,
    ) -> AudioPipelineOutput | tuple:
        r"""
        Generate audio from text, optionally from audio too: inpainting, continuation, variations, frequency
        inpainting, and audio longer than the model's length.

        Args:
            prompt (`str` or `list[str]`): What to generate. Pass `prompt_embeds` instead to skip text encoding.
            audio_length_in_s (`float`, *optional*): Seconds of audio to return. Up to the model's length (10.24 s for
                AudioLDM latents) one window is generated and cropped; above it, overlapping windows, each continuing
                the one before (see `window_overlap_s`), with memory that does not grow with the length beyond the
                waveform and its mel spectrogram. Defaults to the model's length, or to the length of `audio`.
            num_inference_steps (`int`, *optional*): Decoding iterations T (paper §3.2; 64 in the paper's tables).
                This and the next two default to the model's `recommended_call_settings` (see the class), else to 32,
                100 and 5.0.
            num_diffusion_steps (`int` or `tuple[int, int]`, *optional*): Sampling steps of the diffusion head
                per decoding iteration (diffusion head only). A pair `(first, last)` anneals them (DiSA, Zhao et al. 2025, arXiv 2505.20297):
                `first` steps at the first iteration, `last` at the final one, linear in between and rounded (e.g.
                `(50, 5)`). Later tokens are conditioned on more generated context and need fewer steps; the later
                iterations generate the most tokens, so the head's work drops by more than the mean step count.
            diffusion_step_annealing (`str`, defaults to `"linear"`): How a pair `(first, last)` anneals: DiSA's
                `"linear"`, or `"geometric"` (a constant ratio between iterations: fewer steps in the middle ones, 323
                instead of 440 head calls for `(50, 5)` at T = 16; faster, and measured to lose some text accuracy on
                the embedded model, see the README's Speed section).
            guidance_scale (`float`, *optional*): Maximum guidance scale β_max (App. A); 1.0 disables
                classifier-free guidance and halves the work.
            guidance_schedule (`str`, *optional*): `"cosine"` (paper), `"linear"` or `"constant"`; defaults to the
                scheduler's configured schedule.
            temperature (`float`, defaults to 1.0): Scales the noise injected at every head sampling step (MAR), or
                the energy head's input noise (see [`ImpactEnergyHead`]).
            negative_prompt (`str` or `list[str]`, *optional*): Text for the unconditional branch of guidance instead
                of the learned null condition.
            num_waveforms_per_prompt (`int`, defaults to 1): Waveforms generated per prompt.
            generator (`torch.Generator` or `list[torch.Generator]`, *optional*): Source of all randomness (positions
                and noise). With a list, waveform k depends only on generator k.
            latents (`torch.Tensor`, *optional*): Pre-generated Gaussian noise of shape
                `(batch · num_waveforms_per_prompt, latent_channels, latent_length, latent_width)`: the diffusion
                head's starting sample at every latent position (diffusion head only).
            prompt_embeds (`torch.Tensor`, *optional*): Pre-computed text token embeddings `(batch, L, text_embed_dim)`.
            prompt_attention_mask (`torch.Tensor`, *optional*): Their mask (1 = token, 0 = padding); default all ones.
            pooled_prompt_embeds (`torch.Tensor`, *optional*): Pre-computed pooled sentence embeddings (see
                `pooled_text_embedding`), for a model with a pooled condition.
            negative_prompt_embeds, negative_prompt_attention_mask, negative_pooled_prompt_embeds (*optional*):
                The same for the negative prompt.
            output_type (`str`, defaults to `"np"`): `"np"` or `"pt"` waveforms, or `"latent"` for the VAE latents.
            return_dict (`bool`, defaults to `True`): Return an [`~diffusers.AudioPipelineOutput`] instead of a tuple.
            callback_on_step_end (`Callable`, [`~diffusers.callbacks.PipelineCallback`] or
                [`~diffusers.callbacks.MultiPipelineCallbacks`], *optional*): Called after every decoding iteration as
                `callback_on_step_end(self, step, timestep, callback_kwargs)`; may return replacements for
                `callback_kwargs`.
            callback_on_step_end_tensor_inputs (`list[str]`, defaults to `["latents"]`): Tensors passed in
                `callback_kwargs`: `"latents"` are the latents generated so far (zeros where still masked), of the
                current window when generating in several.
            audio (`np.ndarray`, `torch.Tensor` or a list of them, *optional*): Mono float waveform(s) in [-1, 1] at the
                pipeline's sampling rate (or `audio_sampling_rate`): one for all prompts, or a list with one per prompt
                (of one length). It is encoded like the training data (centred, peak-normalised to 0.5, AudioLDM's
                mel spectrogram, the VAE posterior mean) and its latent tokens are *given*: visible from the first
                decoding iteration, never regenerated, unless selected below. Tokens after its end are generated
                (continuation: pass a longer `audio_length_in_s`). A token covers `seconds_per_token_column` (AudioLDM:
                0.16 s) and one of `num_token_bands` frequency bands. The output keeps the input's samples exactly
                outside the generated regions, with equal-power crossfades of 50 ms inside them (at the end of a
                continued input: over its last 50 ms); generated audio is brought to the input's level.
            audio_sampling_rate (`int`, *optional*): Sampling rate of `audio` when it differs from the pipeline's; it is
                resampled (polyphase filter). Without it `audio` is taken to be at the pipeline's rate.
            mask_start_s, mask_end_s (`float` or `list[float]`, *optional*): Inpainting: the regions of `audio` (seconds,
                start < end, inside the audio) to generate. Every token column overlapping a region is generated;
                outside the exact regions the input's samples are kept.
            mask_bands (`int` or `list[int]`, *optional*): Frequency inpainting (bandwidth extension): the token bands
                to generate (0 the lowest; e.g. `[3]`, the top band of AudioLDM's four, for a low-passed clip), within
                the regions if given, else over the whole audio; the other bands keep the input's spectrum.
            strength (`float`, *optional*): Variations: this fraction in (0, 1] of the input's tokens (within the
                regions and bands if given) is chosen at random from `generator` and generated, the rest is given;
                1.0 generates all of them, which ignores the input (text to audio).
            window_overlap_s (`float`, *optional*): Long-form generation: seconds each window shares with the one before
                (its given context); defaults to half the model's length. Between one token and the model's length less
                one token.

        Examples:

        Returns:
            [`~diffusers.AudioPipelineOutput`] or `tuple`: waveforms of shape `(batch · num_waveforms_per_prompt,
            samples)` at `vocoder.config.sampling_rate` (or latents for `output_type="latent"`). Waveforms are float32
            as the vocoder makes them, neither clipped nor normalised: nominally in [-1, 1] (AudioLDM trains on audio
            peaking at 0.5), but a model can exceed full scale (the small embedded default model peaks up to about 5
            on some seeds for the sounds it knows, and above full scale on some prompts it does not know). Scale them before
            writing integer PCM; `impact-generate` peak-normalises to -1 dBFS when a clip would clip.

        Raises:
            `ValueError`: An argument is invalid (every message names it). `FloatingPointError`: the latents, mel
            spectrogram or waveform came out non-finite (e.g. float16 overflow); nothing non-finite is returned.
        """
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        settings = self.call_defaults  # for the arguments not passed
        num_inference_steps = settings["num_inference_steps"] if num_inference_steps is None else num_inference_steps
        if "num_diffusion_steps" in settings and num_diffusion_steps is None:  # a diffusion head's step count
            num_diffusion_steps = settings["num_diffusion_steps"]
        guidance_scale = settings["guidance_scale"] if guidance_scale is None else guidance_scale
        self.check_inputs(
            prompt,
            audio_length_in_s,
            num_inference_steps,
            num_diffusion_steps,
            diffusion_step_annealing,
            guidance_scale,
            guidance_schedule,
            temperature,
            negative_prompt,
            num_waveforms_per_prompt,
            generator,
            latents,
            prompt_embeds,
            prompt_attention_mask,
            pooled_prompt_embeds,
            negative_prompt_embeds,
            negative_prompt_attention_mask,
            negative_pooled_prompt_embeds,
            output_type,
            callback_on_step_end_tensor_inputs,
        )
        batch_size = (len(prompt) if isinstance(prompt, list) else 1) if prompt is not None else len(prompt_embeds)
        input_waveforms, audio_length_in_s, mask_start_s, mask_end_s, mask_bands = self.check_audio_inputs(
            audio,
            audio_sampling_rate,
            mask_start_s,
            mask_end_s,
            mask_bands,
            strength,
            window_overlap_s,
            audio_length_in_s,
            batch_size,
            latents,
            output_type,
        )
        if input_waveforms is not None:  # one waveform per generated clip
            input_waveforms = np.repeat(input_waveforms, num_waveforms_per_prompt, axis=0)
        # NumPy numbers are accepted as numbers; everything below sees Python ints and floats.
        num_inference_steps = int(num_inference_steps)
        num_waveforms_per_prompt, temperature = int(num_waveforms_per_prompt), float(temperature)
        self._guidance_scale = float(guidance_scale)
        self._interrupt = False
        strength = None if strength is None else float(strength)
        device = self._execution_device
        do_classifier_free_guidance = self.do_classifier_free_guidance

        # 1. Text condition
        embeds = self.encode_prompt(
            prompt,
            device,
            num_waveforms_per_prompt,
            do_classifier_free_guidance,
            negative_prompt,
            prompt_embeds,
            prompt_attention_mask,
            pooled_prompt_embeds,
            negative_prompt_embeds,
            negative_prompt_attention_mask,
            negative_pooled_prompt_embeds,
        )
        condition = self._prepare_condition(*embeds, do_classifier_free_guidance)
        batch_size = embeds[0].shape[0]

        # 2. Which tokens are generated and which are given (audio input), in windows of the model's length
        plan = self._plan_tokens(
            input_waveforms,
            audio_length_in_s,
            mask_start_s,
            mask_end_s,
            mask_bands,
            strength,
            window_overlap_s,
            batch_size,
        )
        decoding = {
            "condition": condition,
            "num_inference_steps": num_inference_steps,
            "num_diffusion_steps": num_diffusion_steps,
            "diffusion_step_annealing": diffusion_step_annealing,
            "guidance_schedule": guidance_schedule,
            "temperature": temperature,
            "generator": generator,
            "latents": latents,
            "callback_on_step_end": callback_on_step_end,
            "callback_on_step_end_tensor_inputs": callback_on_step_end_tensor_inputs,
        }

        # 3. Iterative mask-based parallel decoding (§3.2) of each window; given tokens are visible from the start
        num_windows = len(plan["window_starts"])
        mel_windows, window_latents = [], None
        with self.progress_bar(total=num_windows) if num_windows > 1 else contextlib.nullcontext() as window_bar:
            for window_start in plan["window_starts"]:  # (an interrupt skips the remaining iterations of each)
                tokens, given = self._window_tokens(plan, window_start, strength, generator, device)
                if not given.all():
                    tokens = self._decode_window(
                        tokens, None if not given.any() else given, show_progress=num_windows == 1, **decoding
                    )
                self._store_window(plan, window_start, tokens)
                window_latents = self.transformer.unpatchify(tokens)
                _check_generated("latents", window_latents)
                if output_type != "latent":
                    mel = self.decode_latents(window_latents)
                    _check_generated("mel spectrogram (VAE decoder output)", mel)
                    mel_windows.append((window_start * plan["frames_per_column"], mel))
                if window_bar is not None:
                    window_bar.update()

        # 4. Latents → mel spectrogram → waveform, cropped to the requested length; the input's samples spliced back
        if output_type == "latent":
            audio = window_latents
        else:
            if len(mel_windows) == 1:
                mel_spectrogram = mel_windows[0][1]
            else:
                num_frames = plan["num_columns"] * plan["frames_per_column"]
                mel_spectrogram = stitch_mel_windows(mel_windows, num_frames)
            audio = self.mel_spectrogram_to_waveform(mel_spectrogram)
            _check_generated("waveform (vocoder output)", audio)
            audio = audio[:, : round(audio_length_in_s * self.vocoder.config.sampling_rate)]
            if input_waveforms is not None:
                audio = self._splice_input(plan, audio, strength)
            if output_type == "np":
                audio = audio.numpy()
        self.maybe_free_model_hooks()
        if not return_dict:
            return (audio,)
        return AudioPipelineOutput(audios=audio)
