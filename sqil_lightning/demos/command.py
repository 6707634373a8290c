"""`python -m sqil_lightning demos generate|record|from-minari|inspect …`: make or inspect demo files."""

from __future__ import annotations

import argparse
import json

from sqil_lightning.arg_types import positive_int
from sqil_lightning.demos.experts import EXPERTS, generate_expert_demos, record_checkpoint_demos
from sqil_lightning.demos.minari_datasets import load_minari_demos
from sqil_lightning.demos.store import DemoSet
from sqil_lightning.envs.make import env_spaces
from sqil_lightning.envs.pixels import PixelPipeline
from sqil_lightning.errors import ConfigError

PIXELS_HELP = (
    "image tasks: the config's data.pixels as JSON, e.g. '{\"size\": 64}' (conf/carracing.yaml) or "
    "'{\"size\": null, \"frame_stack\": 4}' (conf/pong.yaml)"
)
SUCCESS_ONLY_HELP = "keep only episodes that end in the task's success (LunarLander), skipping failed seeds, until --episodes are kept"


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The `demos` subcommand, with one subcommand of its own per way to make or read a demo file."""
    parser = commands.add_parser("demos", description="Make or inspect demo files.")
    parser.set_defaults(handler=run)
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="record episodes of a built-in expert into a demo file")
    gen.add_argument("--expert", required=True, choices=sorted(EXPERTS))
    gen.add_argument("--episodes", type=positive_int, default=100)
    gen.add_argument("--seed", type=int, default=0, help="episode i starts from reset(seed=SEED+i)")
    gen.add_argument("--out", required=True, help="path of the .npz demo file to write")
    gen.add_argument("--pixels", type=_pixels, help=PIXELS_HELP)
    gen.add_argument("--success-only", action="store_true", help=SUCCESS_ONLY_HELP)
    rec = sub.add_parser("record", help="record episodes of a trained checkpoint (e.g. an expert trained with data.reward env)")
    rec.add_argument("--checkpoint", required=True, help="a .ckpt written by `python -m sqil_lightning fit`")
    rec.add_argument("--episodes", type=positive_int, default=10)
    rec.add_argument("--seed", type=int, default=0, help="episode i starts from reset(seed=SEED+i)")
    rec.add_argument("--stochastic", action="store_true", help="sample actions instead of the deterministic policy")
    rec.add_argument("--out", required=True, help="path of the .npz demo file to write")
    rec.add_argument("--pixels", type=_pixels, help=PIXELS_HELP)
    rec.add_argument("--success-only", action="store_true", help=SUCCESS_ONLY_HELP)
    conversion = sub.add_parser("from-minari", help="convert a local Minari dataset (id or folder) into a demo file")
    conversion.add_argument("dataset", help="dataset id in the local Minari root, or a dataset folder")
    conversion.add_argument("--out", required=True, help="path of the .npz demo file to write")
    ins = sub.add_parser("inspect", help="validate a demo file and print what it holds")
    ins.add_argument("path")
    ins.add_argument("--env-id", help="also check the demos against this env's spaces")
    ins.add_argument("--pixels", type=_pixels, help=PIXELS_HELP)


def run(ns: argparse.Namespace) -> None:
    """Makes (and writes) or reads the demo file ``ns`` names, then prints what it holds."""
    if ns.command == "generate":
        demos = generate_expert_demos(ns.expert, ns.episodes, ns.seed, ns.out, pixels=ns.pixels, success_only=ns.success_only)
    elif ns.command == "record":
        demos = record_checkpoint_demos(
            ns.checkpoint,
            ns.episodes,
            ns.seed,
            ns.out,
            deterministic=not ns.stochastic,
            pixels=ns.pixels,
            success_only=ns.success_only,
        )
    elif ns.command == "from-minari":
        demos = load_minari_demos(ns.dataset)
        demos.save(ns.out)
    else:
        demos = DemoSet.load(ns.path)
        if ns.env_id:
            demos.check_against(env_spaces(ns.env_id, ns.pixels), ns.env_id, source=f"demo file {ns.path}")
    if ns.command != "inspect":
        print(f"wrote {ns.out}")
    _print_demo_summary(demos)


def _pixels(text: str) -> PixelPipeline:
    try:
        return PixelPipeline.from_config(json.loads(text))
    except (json.JSONDecodeError, ConfigError) as err:
        raise argparse.ArgumentTypeError(f"{text!r} is not a pixel pipeline ({err})") from None


def _print_demo_summary(demos: DemoSet) -> None:
    returns = demos.episode_returns()
    print(f"  metadata:     {demos.metadata}")
    print(f"  transitions:  {len(demos)} in {demos.num_episodes} episodes")
    print(f"  observation:  {demos.observations.shape[1:]} {demos.observations.dtype}")
    print(f"  action:       {demos.actions.shape[1:]} {demos.actions.dtype}")
    print(f"  terminated:   {int(demos.terminated.sum())} episodes, truncated: {int(demos.truncated.sum())}")
    print(f"  env return:   mean {returns.mean():.1f}, min {returns.min():.1f}, max {returns.max():.1f}")
