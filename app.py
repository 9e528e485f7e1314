# Copyright 2026 The diffusers_impact authors. Licensed under the Apache License, Version 2.0.
"""The web demo as a Hugging Face Space runs it (`sdk: gradio`, `app_file: app.py`): `python app.py`.

The same page as `impact-demo`: the embedded default model (both heads) unless the `IMPACT_MODEL` environment variable
names an ImpactPipeline folder or Hub id. A Space binds to 0.0.0.0 (`GRADIO_SERVER_NAME`, which Spaces set); run
locally, it binds to 127.0.0.1.
"""

import os

from diffusers_impact.demo import DEFAULT_MODEL, ImpactDemo, load_demo_pipelines


model = os.environ.get("IMPACT_MODEL", DEFAULT_MODEL)
demo = ImpactDemo(load_demo_pipelines(model), model_name="impact-animals" if model == DEFAULT_MODEL else model)

if __name__ == "__main__":
    demo.launch(
        host=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), port=int(os.environ.get("GRADIO_SERVER_PORT", 7860))
    )
