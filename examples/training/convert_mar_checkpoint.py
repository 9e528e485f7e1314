"""Initialise an IMPACT pipeline's transformer and diffusion head from a MAR checkpoint (github.com/LTH14/mar).

Example:

    python examples/training/convert_mar_checkpoint.py --mar_checkpoint mar_base.pth \
        --pipeline path/to/impact_pipeline --output_dir impact_from_mar_base

Every MAR tensor whose IMPACT counterpart has the same shape is copied; the printed report lists what was copied,
what kept its initial values (and why) and which MAR tensors were not used. See `diffusers_impact.convert_mar`.
"""

import argparse

from diffusers_impact import ImpactPipeline
from diffusers_impact.convert_mar import convert_mar_to_impact, infer_mar_config, load_mar_checkpoint


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mar_checkpoint", required=True, help="MAR .pth file (e.g. mar_base.pth).")
    parser.add_argument(
        "--pipeline", required=True, help="ImpactPipeline folder or Hub id whose weights to initialise."
    )
    parser.add_argument("--output_dir", required=True, help="Where to save the converted pipeline.")
    parser.add_argument(
        "--use_model_weights",
        action="store_true",
        help="Use MAR's raw training weights ('model') instead of the EMA weights ('model_ema', the default).",
    )
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_arguments(argv)
    state_dict, mar_args = load_mar_checkpoint(args.mar_checkpoint, use_ema=not args.use_model_weights)
    print(f"MAR checkpoint ({'model' if args.use_model_weights else 'model_ema'}): {infer_mar_config(state_dict)}")
    pipeline = ImpactPipeline.from_pretrained(args.pipeline)
    report = convert_mar_to_impact(state_dict, pipeline.transformer, pipeline.diff_head, mar_args=mar_args)
    print(report)
    pipeline.save_pretrained(args.output_dir)
    print(f"Saved to {args.output_dir}")


if __name__ == "__main__":
    main()
