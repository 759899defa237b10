"""``cascade train`` and ``cascade assemble``: train stages from YAML recipes, then put the trained stages
together as one :class:`~cascade.CascadePipeline` folder."""

import argparse
from pathlib import Path

from cascade.cascade_settings import STAGES


def run_train(args: argparse.Namespace) -> None:
    """Runs each recipe in order (each resumes from its last checkpoint unless ``--no-resume``)."""
    from .recipe import run_recipe

    if args.output_dir is not None and len(args.configs) > 1:
        raise ValueError(f"--output-dir needs exactly one recipe, got {len(args.configs)}")
    overrides = {"resume": not args.no_resume}
    if args.max_steps is not None:
        overrides["max_steps"] = args.max_steps
    if args.output_dir is not None:
        overrides["output_dir"] = str(args.output_dir)
    for config in args.configs:
        exported = run_recipe(config, stop_after=args.stop_after, **overrides)
        if exported is not None:
            print(f"wrote {exported}")


def assemble(
    output: Path, stage_folders: dict[str, Path], stage_defaults: dict[str, dict] | None = None
) -> Path:
    """Loads each stage pipeline saved in ``stage_folders`` (stage name -> folder, in any order; safetensors
    only) and writes them to ``output`` as one cascade (``CascadePipeline.save_pretrained``, which is atomic),
    with ``stage_defaults``: the sampling settings the cascade uses unless a call sets them."""
    from cascade.pipelines import CascadePipeline
    from cascade.pipelines.cascade import STAGE_CLASSES

    unknown = sorted(set(stage_folders) - set(STAGES))
    if unknown or not stage_folders:
        raise ValueError(
            f"stage folders must be given for stages among {list(STAGES)}, got {sorted(stage_folders)}"
        )
    for name, folder in stage_folders.items():
        if not Path(folder, "model_index.json").is_file():
            raise ValueError(
                f"--{name.replace('_', '-')} {str(folder)!r} is not a saved stage pipeline folder"
            )
    if Path(output).exists():
        raise ValueError(f"{str(output)!r} already exists; give a new folder")
    stages = {
        name: STAGE_CLASSES[name].from_pretrained(stage_folders[name], use_safetensors=True)
        for name in STAGES
        if name in stage_folders
    }
    CascadePipeline(stage_defaults=stage_defaults, **stages).save_pretrained(output)
    return Path(output)


def run_assemble(args: argparse.Namespace) -> None:
    folders = {name: getattr(args, name) for name in STAGES if getattr(args, name) is not None}
    defaults = None
    if args.stage_defaults is not None:
        import yaml

        if not args.stage_defaults.is_file():
            raise ValueError(f"--stage-defaults {str(args.stage_defaults)!r} is not a file")
        defaults = yaml.safe_load(args.stage_defaults.read_text())
        if not isinstance(defaults, dict):
            raise ValueError(
                f"--stage-defaults {str(args.stage_defaults)!r} must hold a mapping of stage to settings"
            )
    print(f"wrote {assemble(args.output, folders, defaults)}")


def add_train_parsers(commands) -> None:
    """Adds ``train`` and ``assemble`` to the ``cascade`` subcommands (no heavy imports)."""
    train = commands.add_parser(
        "train",
        help="train stages from YAML recipes",
        description="Train one stage per YAML recipe (see configs/demo/), in order, resuming each from its last "
        "checkpoint. Works under plain python and under `accelerate launch $(which cascade) train ...`.",
    )
    train.add_argument("configs", nargs="+", type=Path, help="recipe files, trained in the order given")
    train.add_argument("--output-dir", type=Path, help="replace the recipe's output_dir (one recipe only)")
    train.add_argument("--max-steps", type=int, help="replace the recipes' max_steps")
    train.add_argument("--stop-after", type=int, help="stop (with a checkpoint) after this many steps")
    train.add_argument("--no-resume", action="store_true", help="start over even if checkpoints exist")
    built = commands.add_parser(
        "assemble",
        help="put trained stages together as one cascade folder",
        description="Load trained stage pipelines (the model/ folders `cascade train` writes) and save them as "
        "one cascade, which `cascade generate --model` and CascadePipeline.from_pretrained read.",
    )
    built.add_argument("output", type=Path, help="folder to write (must not exist)")
    for name in STAGES:
        built.add_argument(
            f"--{name.replace('_', '-')}", dest=name, type=Path, help=f"the {name} stage folder"
        )
    built.add_argument(
        "--stage-defaults",
        type=Path,
        help="YAML of per-stage sampling settings saved with the cascade (stage_kwargs layout)",
    )
