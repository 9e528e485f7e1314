# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""LoRA adapters for [`ImpactPipeline`], through diffusers' LoRA machinery (PEFT backend): on the transformer and,
optionally, the diffusion head."""

import hashlib
import json
import os
from collections.abc import Callable

import safetensors.torch
import torch
from diffusers.loaders.lora_base import (
    LORA_ADAPTER_METADATA_KEY,
    LORA_WEIGHT_NAME_SAFE,
    LoraBaseMixin,
    _fetch_state_dict,
)
from diffusers.utils import get_adapter_name, is_peft_available, logging
from huggingface_hub.utils import validate_hf_hub_args


logger = logging.get_logger(__name__)

# The safetensors header key holding the fingerprint of the transformer an adapter was trained on.
BASE_MODEL_METADATA_KEY = "impact_base_model"
# The transformer's linear layers an adapter targets by default: every attention projection.
DEFAULT_LORA_TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0"]
# The diffusion head's linear layers a head adapter targets (`train_impact.py --lora_head`): the projection of the
# transformer's hidden vector, the residual MLPs and every AdaLN modulation (with PEFT's suffix matching, `mlp.0` and
# `mlp.2` also take the timestep embedding's MLP).
DEFAULT_HEAD_LORA_TARGET_MODULES = ["cond_embed", "mlp.0", "mlp.2", "adaLN_modulation.1"]


def base_model_fingerprint(transformer: torch.nn.Module) -> str:
    """
    A short hash identifying a transformer's base weights (the same in every process and however it was loaded), stored with every adapter saved here and checked when one is
    loaded, so that an adapter trained on another base model of the same architecture is refused instead of silently
    giving something else. It covers the config and every parameter outside linear layers (position embeddings, mask
    token, norms): LoRA changes only linear layers, so fusing an adapter leaves it unchanged. Values are hashed in
    float16, so a model loaded in float32 or float16 has the same fingerprint.

    Example:

    ```py
    >>> from diffusers_impact.loaders.lora_pipeline_impact import base_model_fingerprint
    >>> from diffusers_impact.testing_utils import tiny_impact_components

    >>> first, second = (tiny_impact_components(seed=seed)["transformer"] for seed in (0, 1))
    >>> len(base_model_fingerprint(first)), base_model_fingerprint(first) == base_model_fingerprint(second)
    (16, False)
    ```
    """
    # The config's public entries only: private ones (`_name_or_path`, `_use_default_values`) say how it was loaded.
    config = {key: value for key, value in transformer.config.items() if not key.startswith("_")}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for module_name, module in transformer.named_modules():
        if isinstance(module, torch.nn.Linear):
            continue
        for name, parameter in module.named_parameters(recurse=False):
            digest.update(f"{module_name}.{name}".encode())
            digest.update(parameter.detach().to("cpu", torch.float16).numpy().tobytes())
    return digest.hexdigest()[:16]


class ImpactLoraLoaderMixin(LoraBaseMixin):
    r"""
    LoRA adapters on the [`ImpactTransformer`] (and optionally the [`ImpactDiffHead`]) of an [`ImpactPipeline`], the
    diffusers way: `load_lora_weights` (a
    folder or a Hub id holding `pytorch_lora_weights.safetensors`, or a state dict), `save_lora_weights`,
    `set_adapters(["a", "b"], [0.7, 0.3])`, `disable_lora` / `enable_lora`, `fuse_lora` / `unfuse_lora` and
    `unload_lora_weights`. Needs `peft` (`pip install -e ".[lora]"`).

    Adapters are read from safetensors only (never unpickled). Each one saved here carries the fingerprint of the
    transformer it was trained on ([`base_model_fingerprint`]); loading it into another base model is refused. An
    adapter may also hold weights for the diffusion head (keys starting with `diff_head.`): they load into the head
    under the same adapter name, so `set_adapters`, fusing and unloading act on both.

    Example (a tiny pipeline and a random adapter, offline):

    ```py
    >>> import tempfile
    >>> import torch
    >>> from peft import LoraConfig
    >>> from peft.utils import get_peft_model_state_dict
    >>> from diffusers_impact import ImpactPipeline
    >>> from diffusers_impact.loaders.lora_pipeline_impact import DEFAULT_LORA_TARGET_MODULES, base_model_fingerprint
    >>> from diffusers_impact.testing_utils import tiny_impact_pipeline

    >>> pipe = tiny_impact_pipeline()
    >>> pipe.set_progress_bar_config(disable=True)
    >>> config = LoraConfig(r=4, lora_alpha=4, target_modules=DEFAULT_LORA_TARGET_MODULES, init_lora_weights=False)
    >>> pipe.transformer.add_adapter(config, adapter_name="bells")
    >>> folder = tempfile.mkdtemp()
    >>> ImpactPipeline.save_lora_weights(
    ...     folder,
    ...     transformer_lora_layers=get_peft_model_state_dict(pipe.transformer, adapter_name="bells"),
    ...     transformer_lora_adapter_metadata=config.to_dict(),
    ...     base_model_fingerprint=base_model_fingerprint(pipe.transformer),
    ... )
    >>> pipe.delete_adapters("bells")
    >>> pipe.load_lora_weights(folder, adapter_name="bells")
    >>> pipe.get_active_adapters()
    ['bells']
    ```
    """

    _lora_loadable_modules = ["transformer", "diff_head"]
    transformer_name = "transformer"
    diff_head_name = "diff_head"

    @classmethod
    @validate_hf_hub_args
    def lora_state_dict(
        cls, pretrained_model_name_or_path_or_dict: str | os.PathLike | dict[str, torch.Tensor], **kwargs
    ):
        """
        The LoRA state dict of a folder, Hub id or dict, and with `return_lora_metadata=True` also its adapter config
        and the base-model fingerprint it was saved with (`None` for a dict or a file saved elsewhere). Safetensors only:
        `use_safetensors=False` and `.bin` weight names are refused.
        """
        return_lora_metadata = kwargs.pop("return_lora_metadata", False)
        weight_name = kwargs.pop("weight_name", None)
        if kwargs.pop("use_safetensors", True) is False or (weight_name and not weight_name.endswith(".safetensors")):
            raise ValueError(
                "ImpactPipeline loads LoRA adapters from safetensors only (pickled weights can run code): pass a "
                f"`.safetensors` weight_name, got {weight_name!r}."
            )
        fingerprint = None
        source = pretrained_model_name_or_path_or_dict
        if weight_name is None and not isinstance(source, dict) and not os.path.isdir(source):
            weight_name = LORA_WEIGHT_NAME_SAFE  # a Hub id: the name `save_lora_weights` writes (no listing offline)
        if isinstance(pretrained_model_name_or_path_or_dict, dict):
            state_dict, metadata = dict(pretrained_model_name_or_path_or_dict), None
        else:
            state_dict, metadata, file_metadata = _fetch_state_dict(
                pretrained_model_name_or_path_or_dict=pretrained_model_name_or_path_or_dict,
                weight_name=weight_name,
                use_safetensors=True,
                local_files_only=kwargs.pop("local_files_only", None),
                cache_dir=kwargs.pop("cache_dir", None),
                force_download=kwargs.pop("force_download", False),
                proxies=kwargs.pop("proxies", None),
                token=kwargs.pop("token", None),
                revision=kwargs.pop("revision", None),
                subfolder=kwargs.pop("subfolder", None),
                user_agent={"file_type": "attn_procs_weights", "framework": "pytorch"},
                allow_pickle=False,
                return_file_metadata=True,
            )
            fingerprint = (file_metadata or {}).get(BASE_MODEL_METADATA_KEY)
        if return_lora_metadata:
            return state_dict, metadata, fingerprint
        return state_dict

    def load_lora_weights(
        self,
        pretrained_model_name_or_path_or_dict: str | os.PathLike | dict[str, torch.Tensor],
        adapter_name: str | None = None,
        **kwargs,
    ):
        """
        Load a LoRA adapter into the transformer, active from now on (with earlier ones: see `set_adapters`).

        Args:
            pretrained_model_name_or_path_or_dict: A folder or Hub id with `pytorch_lora_weights.safetensors` (or
                `weight_name`), or a state dict with `transformer.`-prefixed (and optionally `diff_head.`-prefixed)
                LoRA keys.
            adapter_name (`str`, *optional*): Its name (default `default_0`, `default_1`, ...).
            kwargs: `weight_name`, `subfolder`, `revision`, `cache_dir`, `local_files_only`, `token`.

        Raises:
            `ValueError`: the file holds no LoRA weights, weights for another component, or was saved for another
            base model (another fingerprint).
        """
        if not is_peft_available():
            raise ImportError('LoRA adapters need the `peft` package: pip install -e ".[lora]" (or pip install peft).')
        state_dict, metadata, fingerprint = self.lora_state_dict(
            pretrained_model_name_or_path_or_dict, return_lora_metadata=True, **kwargs
        )
        source = (
            "the state dict"
            if isinstance(pretrained_model_name_or_path_or_dict, dict)
            else repr(str(pretrained_model_name_or_path_or_dict))
        )
        if not state_dict or not all("lora" in key for key in state_dict):
            raise ValueError(f"{source} is not a LoRA adapter: every weight name must contain 'lora'.")
        components = {key.split(".")[0] for key in state_dict}
        foreign = sorted(components - set(self._lora_loadable_modules))
        if foreign:
            raise ValueError(
                f"{source} has LoRA weights for {foreign}; an ImpactPipeline takes adapters for its "
                f"{' and '.join(f'`{name}`' for name in self._lora_loadable_modules)} (keys starting with their names)."
            )
        if self.diff_head_name in components and self.diff_head is None:
            raise ValueError(
                f"{source} adapts a diffusion head, but this pipeline has a {self.head_type} head: load it into the "
                "diffusion-head pipeline it was made for."
            )
        expected = base_model_fingerprint(self.transformer)
        if fingerprint is not None and fingerprint != expected:
            raise ValueError(
                f"The LoRA adapter {source} was trained on another base model (fingerprint {fingerprint}) than this "
                f"pipeline's transformer ({expected}): load the pipeline it was made for."
            )
        if fingerprint is None:
            logger.warning(f"The LoRA adapter {source} records no base model: it is loaded unchecked.")
        adapter_name = adapter_name or get_adapter_name(self.transformer)  # one name for both components
        for name in sorted(components):  # "diff_head" before "transformer"; each takes the keys of its prefix
            getattr(self, name).load_lora_adapter(
                state_dict, prefix=name, adapter_name=adapter_name, metadata=metadata, _pipeline=self
            )

    @classmethod
    def save_lora_weights(
        cls,
        save_directory: str | os.PathLike,
        transformer_lora_layers: dict[str, torch.Tensor],
        transformer_lora_adapter_metadata: dict | None = None,
        base_model_fingerprint: str | None = None,
        diff_head_lora_layers: dict[str, torch.Tensor] | None = None,
        diff_head_lora_adapter_metadata: dict | None = None,
        is_main_process: bool = True,
        weight_name: str | None = None,
        save_function: Callable | None = None,
    ):
        """
        Save a transformer LoRA adapter (e.g. `peft.utils.get_peft_model_state_dict(pipe.transformer)`), and optionally
        the diffusion head's part of it (`diff_head_lora_layers`), as `pytorch_lora_weights.safetensors`, with their
        `LoraConfig`s (`*_lora_adapter_metadata`) and the [`base_model_fingerprint`] of the transformer it belongs to
        in the file's header.
        """
        if not transformer_lora_layers:
            raise ValueError("`transformer_lora_layers` is empty: there is no adapter to save.")
        layers = {cls.transformer_name: transformer_lora_layers}
        configs = {cls.transformer_name: transformer_lora_adapter_metadata}
        if diff_head_lora_layers:
            layers[cls.diff_head_name] = diff_head_lora_layers
            configs[cls.diff_head_name] = diff_head_lora_adapter_metadata
        if save_function is None:

            def save_function(weights, filename):
                header = {"format": "pt"}
                packed = {
                    f"{component}.{key}": value
                    for component, config in configs.items()
                    for key, value in (config or {}).items()
                }
                if packed:
                    header[LORA_ADAPTER_METADATA_KEY] = json.dumps(
                        {key: sorted(value) if isinstance(value, set) else value for key, value in packed.items()},
                        indent=2,
                        sort_keys=True,
                    )
                if base_model_fingerprint:
                    header[BASE_MODEL_METADATA_KEY] = base_model_fingerprint
                safetensors.torch.save_file(weights, filename, metadata=header)

        cls._save_lora_weights(
            save_directory=save_directory,
            lora_layers=layers,
            lora_metadata=dict.fromkeys(layers),  # None: the configs are written by `save_function`
            is_main_process=is_main_process,
            weight_name=weight_name,
            save_function=save_function,
            safe_serialization=True,
        )

    def fuse_lora(self, components: list[str] = ["transformer", "diff_head"], lora_scale: float = 1.0, **kwargs):
        """Merge the active adapters (times `lora_scale`) into the weights they adapt; `unfuse_lora` undoes it."""
        super().fuse_lora(components=components, lora_scale=lora_scale, **kwargs)

    def unfuse_lora(self, components: list[str] = ["transformer", "diff_head"], **kwargs):
        """Undo `fuse_lora`."""
        super().unfuse_lora(components=components, **kwargs)
