# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""The CLAP score (paper App. F.4) with 🤗 transformers' `ClapModel`, deterministic (evaluation.md §2)."""

import os

import numpy as np
import torch
import torch.nn.functional as F
from transformers import ClapModel, ClapProcessor

from ..audio import resample
from .checkpoints import CLAP_MODEL_ID


# laion_clap tokenizes text with `max_length=77` (`tokenizer(..., truncation=True, max_length=77)`).
CLAP_MAX_TEXT_TOKENS = 77


class ClapScorer:
    """
    CLAP score: the mean over (clip, text) pairs of the cosine similarity of their CLAP audio and text embeddings.

    The paper scores with `laion/clap-htsat-fused` (App. F.4), which differs from the CLAP that conditions IMPACT.
    Audio is resampled to the feature extractor's 48 kHz with a polyphase filter (`scipy.signal.resample_poly`) and
    cut to its first 10 s (`max_length_s`); every clip then has `is_longer=False`, so it takes the deterministic
    non-fusion path, as laion_clap does for clips of at most 10 s. (🤗's extractor would otherwise mark one random
    clip per batch as longer, and crop clips over 10 s at random; evaluation.md §2.) Text is tokenized with at most 77
    tokens, as laion_clap does. Embeddings are L2-normalised, so the score is in [-1, 1] (the paper reports ×1).

    Args:
        model ([`~transformers.ClapModel`]): The CLAP model, on the device and dtype to run on.
        processor ([`~transformers.ClapProcessor`]): Its feature extractor and tokenizer.
        batch_size (`int`, defaults to 16): Clips or texts per forward pass; the results do not depend on it.

    Example:

    ```py
    >>> import numpy as np
    >>> from transformers import ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, ClapTextConfig
    >>> from diffusers_impact.evaluation.clap import ClapScorer
    >>> from diffusers_impact.testing_utils import tiny_clap_tokenizer

    >>> tokenizer = tiny_clap_tokenizer()
    >>> text_config = ClapTextConfig(
    ...     vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=1,
    ...     max_position_embeddings=80, pad_token_id=1, bos_token_id=0, eos_token_id=2, projection_dim=8,
    ... )
    >>> audio_config = ClapAudioConfig(
    ...     depths=[1, 1], num_attention_heads=[1, 1], patch_embeds_hidden_size=8, hidden_size=16, window_size=4,
    ...     projection_dim=8, enable_fusion=True,
    ... )
    >>> model = ClapModel(ClapConfig(text_config=text_config.to_dict(), audio_config=audio_config.to_dict(), projection_dim=8))
    >>> scorer = ClapScorer(model.eval(), ClapProcessor(feature_extractor=ClapFeatureExtractor(), tokenizer=tokenizer))
    >>> clips = [np.sin(np.arange(16000) * 0.3), np.zeros(8000)]  # at 16 kHz
    >>> score = scorer(clips, ["a dog bark", "rain on the car"], sampling_rate=16000)
    >>> -1.0 <= score <= 1.0
    True
    ```
    """

    def __init__(self, model: ClapModel, processor: ClapProcessor, batch_size: int = 16):
        self.model = model
        self.processor = processor
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike = CLAP_MODEL_ID,
        device: str | torch.device | None = None,
        batch_size: int = 16,
        **kwargs,
    ) -> "ClapScorer":
        """
        Loads a CLAP model and its processor (a Hub id or a folder made by `save_pretrained`), in evaluation mode.

        Args:
            pretrained_model_name_or_path (`str` or `os.PathLike`, defaults to `"laion/clap-htsat-fused"`): The model.
            device (`str` or `torch.device`, *optional*): Where to run it; defaults to the CPU.
            batch_size (`int`, defaults to 16): See [`ClapScorer`].
            kwargs: Passed to `ClapModel.from_pretrained` (e.g. `torch_dtype`, `cache_dir`).

        Raises:
            `OSError`: The model cannot be found or downloaded; the message names https://huggingface.co/laion/clap-htsat-fused.

        Example:

        ```py
        >>> from diffusers_impact.evaluation.clap import ClapScorer

        >>> try:
        ...     ClapScorer.from_pretrained("/no/such/clap/folder")
        ... except OSError as error:
        ...     print(str(error).splitlines()[0])
        Could not load the CLAP model '/no/such/clap/folder'. The paper's CLAP score uses laion/clap-htsat-fused
        ```
        """
        try:
            model = ClapModel.from_pretrained(pretrained_model_name_or_path, **kwargs)
            processor = ClapProcessor.from_pretrained(pretrained_model_name_or_path)
        except OSError as error:
            raise OSError(
                f"Could not load the CLAP model {os.fspath(pretrained_model_name_or_path)!r}. The paper's CLAP score "
                f"uses {CLAP_MODEL_ID}\n(https://huggingface.co/{CLAP_MODEL_ID}): pass that Hub id with network "
                f"access, or a local folder with its files.\n{error}"
            ) from error
        return cls(model.to(device or "cpu").eval(), processor, batch_size=batch_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def sampling_rate(self) -> int:
        """The sampling rate CLAP takes (48 kHz for the LAION models)."""
        return self.processor.feature_extractor.sampling_rate

    def prepare_audio(self, waveform: np.ndarray, sampling_rate: int) -> np.ndarray:
        """
        A mono waveform resampled to [`~ClapScorer.sampling_rate`] (polyphase filter) and cut to its first 10 s.

        Example:

        ```py
        >>> import numpy as np
        >>> from transformers import ClapFeatureExtractor, ClapProcessor
        >>> from diffusers_impact.evaluation.clap import ClapScorer
        >>> from diffusers_impact.testing_utils import tiny_clap_tokenizer

        >>> processor = ClapProcessor(feature_extractor=ClapFeatureExtractor(), tokenizer=tiny_clap_tokenizer())
        >>> scorer = ClapScorer(model=None, processor=processor)
        >>> scorer.prepare_audio(np.zeros(16000), 16000).shape, scorer.prepare_audio(np.zeros(16000 * 12), 16000).shape
        ((48000,), (480000,))
        ```
        """
        extractor = self.processor.feature_extractor
        waveform = np.asarray(waveform, dtype=np.float64)
        if waveform.ndim != 1:
            raise ValueError(f"Each waveform must be mono (1-D), got shape {waveform.shape}.")
        waveform = resample(waveform, sampling_rate, extractor.sampling_rate)
        return waveform[: extractor.nb_max_samples]  # the first 10 s: no random crop or fusion (evaluation.md §2)

    @torch.no_grad()
    def audio_embeddings(self, waveforms: list[np.ndarray], sampling_rate: int) -> torch.Tensor:
        """
        L2-normalised CLAP audio embeddings (float32, on the CPU) of mono waveforms at `sampling_rate`.

        Example:

        ```py
        >>> import numpy as np
        >>> from transformers import ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, ClapTextConfig
        >>> from diffusers_impact.evaluation.clap import ClapScorer
        >>> from diffusers_impact.testing_utils import tiny_clap_tokenizer

        >>> tokenizer = tiny_clap_tokenizer()
        >>> text_config = ClapTextConfig(
        ...     vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=1,
        ...     max_position_embeddings=80, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        ... )
        >>> audio_config = ClapAudioConfig(
        ...     depths=[1, 1], num_attention_heads=[1, 1], patch_embeds_hidden_size=8, hidden_size=16, window_size=4,
        ...     enable_fusion=True,
        ... )
        >>> config = ClapConfig(text_config=text_config.to_dict(), audio_config=audio_config.to_dict(), projection_dim=8)
        >>> processor = ClapProcessor(feature_extractor=ClapFeatureExtractor(), tokenizer=tokenizer)
        >>> scorer = ClapScorer(ClapModel(config).eval(), processor)
        >>> embeddings = scorer.audio_embeddings([np.zeros(16000), np.ones(16000)], sampling_rate=16000)
        >>> embeddings.shape, [round(norm, 4) for norm in embeddings.norm(dim=-1).tolist()]
        (torch.Size([2, 8]), [1.0, 1.0])
        ```
        """
        extractor = self.processor.feature_extractor
        embeddings = []
        for start in range(0, len(waveforms), self.batch_size):
            batch = [
                self.prepare_audio(waveform, sampling_rate) for waveform in waveforms[start : start + self.batch_size]
            ]
            inputs = extractor(batch, sampling_rate=extractor.sampling_rate, return_tensors="pt")
            is_longer = torch.zeros_like(inputs["is_longer"], dtype=torch.bool)  # no clip is over 10 s any more
            features = self.model.get_audio_features(
                input_features=inputs["input_features"].to(self.device, self.model.dtype),
                is_longer=is_longer.to(self.device),
            )
            features = features if isinstance(features, torch.Tensor) else features.pooler_output  # transformers 4 / 5
            embeddings.append(F.normalize(features.float(), dim=-1).cpu())
        return torch.cat(embeddings)

    @torch.no_grad()
    def text_embeddings(self, texts: list[str]) -> torch.Tensor:
        """
        L2-normalised CLAP text embeddings (float32, on the CPU), at most 77 tokens per text.

        Example:

        ```py
        >>> from transformers import ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, ClapTextConfig
        >>> from diffusers_impact.evaluation.clap import ClapScorer
        >>> from diffusers_impact.testing_utils import tiny_clap_tokenizer

        >>> tokenizer = tiny_clap_tokenizer()
        >>> text_config = ClapTextConfig(
        ...     vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=1,
        ...     max_position_embeddings=80, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        ... )
        >>> audio_config = ClapAudioConfig(
        ...     depths=[1, 1], num_attention_heads=[1, 1], patch_embeds_hidden_size=8, hidden_size=16, window_size=4,
        ...     enable_fusion=True,
        ... )
        >>> config = ClapConfig(text_config=text_config.to_dict(), audio_config=audio_config.to_dict(), projection_dim=8)
        >>> processor = ClapProcessor(feature_extractor=ClapFeatureExtractor(), tokenizer=tokenizer)
        >>> scorer = ClapScorer(ClapModel(config).eval(), processor)
        >>> scorer.text_embeddings(["a dog", "the rain on a car"]).shape
        torch.Size([2, 8])
        ```
        """
        embeddings = []
        for start in range(0, len(texts), self.batch_size):
            inputs = self.processor.tokenizer(
                list(texts[start : start + self.batch_size]),
                padding=True,
                truncation=True,
                max_length=CLAP_MAX_TEXT_TOKENS,
                return_tensors="pt",
            )
            features = self.model.get_text_features(
                input_ids=inputs["input_ids"].to(self.device), attention_mask=inputs["attention_mask"].to(self.device)
            )
            features = features if isinstance(features, torch.Tensor) else features.pooler_output
            embeddings.append(F.normalize(features.float(), dim=-1).cpu())
        return torch.cat(embeddings)

    def similarities(self, waveforms: list[np.ndarray], texts: list[str], sampling_rate: int) -> np.ndarray:
        """
        Cosine similarity of each clip with its text: `waveforms[i]` is paired with `texts[i]`.

        Example:

        ```py
        >>> import numpy as np
        >>> import torch
        >>> from diffusers_impact.evaluation.clap import ClapScorer

        >>> class Fixed(ClapScorer):  # stands in for a CLAP model: known embeddings
        ...     def audio_embeddings(self, waveforms, sampling_rate):
        ...         return torch.tensor([[1.0, 0.0], [0.6, 0.8]])
        ...     def text_embeddings(self, texts):
        ...         return torch.tensor([[1.0, 0.0], [1.0, 0.0]])
        >>> Fixed(model=None, processor=None).similarities([np.zeros(1)] * 2, ["a", "b"], 16000).round(4).tolist()
        [1.0, 0.6]
        ```
        """
        if len(waveforms) != len(texts):
            raise ValueError(f"Got {len(waveforms)} waveforms but {len(texts)} texts; they are paired one to one.")
        if not texts:
            raise ValueError("No clips to score.")
        audio = self.audio_embeddings(waveforms, sampling_rate)
        text = self.text_embeddings(texts)
        return (audio * text).sum(dim=-1).double().numpy()  # cosine of unit vectors

    def __call__(self, waveforms: list[np.ndarray], texts: list[str], sampling_rate: int) -> float:
        """The CLAP score: the mean of [`~ClapScorer.similarities`]."""
        return float(self.similarities(waveforms, texts, sampling_rate).mean())
