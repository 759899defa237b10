"""``cascade train`` and ``cascade assemble``: train stages from YAML recipes, then put the trained stages
together as one :class:`~cascade.CascadePipeline` folder."""

import argparse
from pathlib import Path

from cascade.pipelines.stages import STAGES

from . import add_command


def run_train(args: argparse.Namespace) -> None:
    """Runs each recipe in order (each resumes from its last checkpoint unless ``--no-resume``)."""
    from cascade.training.recipe import run_recipe

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
    from cascade.pipelines.cascade import CascadePipeline

    names = [entry.name for entry in STAGES]
    unknown = sorted(set(stage_folders) - set(names))
    if unknown or not stage_folders:
        raise ValueError(f"stage folders must be given for stages among {names}, got {sorted(stage_folders)}")
    for entry in STAGES:
        folder = stage_folders.get(entry.name)
        if folder is not None and not Path(folder, "model_index.json").is_file():
            raise ValueError(f"{entry.flag} {str(folder)!r} is not a saved stage pipeline folder")
    if Path(output).exists():
        raise ValueError(f"{str(output)!r} already exists; give a new folder")
    stages = {
        entry.name: entry.pipeline_class.from_pretrained(stage_folders[entry.name], use_safetensors=True)
        for entry in STAGES
        if entry.name in stage_folders
    }
    CascadePipeline(stage_defaults=stage_defaults, **stages).save_pretrained(output)
    return Path(output)


def run_assemble(args: argparse.Namespace) -> None:
    folders = {
        entry.name: getattr(args, entry.name) for entry in STAGES if getattr(args, entry.name) is not None
    }
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


def add_parsers(commands) -> None:
    """Adds ``train`` and ``assemble`` to the ``cascade`` subcommands."""
    description = (
        "Train one stage per YAML recipe (see configs/demo/), in order, resuming each from its last checkpoint. "
        "Works under plain python and under `accelerate launch $(which cascade) train ...`."
    )
    train = add_command(commands, "train", run_train, "train stages from YAML recipes", description)
    train.add_argument("configs", nargs="+", type=Path, help="recipe files, trained in the order given")
    train.add_argument("--output-dir", type=Path, help="replace the recipe's output_dir (one recipe only)")
    train.add_argument("--max-steps", type=int, help="replace the recipes' max_steps")
    train.add_argument("--stop-after", type=int, help="stop (with a checkpoint) after this many steps")
    train.add_argument("--no-resume", action="store_true", help="start over even if checkpoints exist")
    description = (
        "Load trained stage pipelines (the model/ folders `cascade train` writes) and save them as one cascade, "
        "which `cascade generate --model` and CascadePipeline.from_pretrained read."
    )
    summary = "put trained stages together as one cascade folder"
    built = add_command(commands, "assemble", run_assemble, summary, description)
    built.add_argument("output", type=Path, help="folder to write (must not exist)")
    for entry in STAGES:
        built.add_argument(entry.flag, dest=entry.name, type=Path, help=f"the {entry.name} stage folder")
    built.add_argument(
        "--stage-defaults",
        type=Path,
        help="YAML of per-stage sampling settings saved with the cascade (stage_kwargs layout)",
    )
