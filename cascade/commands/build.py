"""``cascade build STAGE|all -o DIR``: stage checkpoints from the pretrained models of the weights manifest
(:mod:`cascade.hub.build`)."""

import argparse
from pathlib import Path

from cascade.hub.manifest import DEFAULT_MANIFEST

from . import add_command


def add_parsers(commands) -> None:
    description = (
        "Build checkpoint folders from the weights manifest: fetch each entry's pretrained 2D checkpoint "
        "(Hugging Face cache first; HF_HUB_OFFLINE=1 reads only the cache), check the sha256 of its files, "
        "inflate its UNet and write DIR/<entry> (save_pretrained and a model card README.md). A failed build "
        "leaves no half-written folder."
    )
    summary = "build stage checkpoints from the pretrained models of the weights manifest"
    parser = add_command(commands, "build", run, summary, description)
    parser.add_argument("stage", metavar="STAGE", help="a manifest entry (e.g. keyframes, demo) or 'all'")
    parser.add_argument(
        "--manifest",
        type=Path,
        default=DEFAULT_MANIFEST,
        metavar="FILE",
        help="weights manifest (default: the weights_manifest.yaml shipped with the package, %(default)s)",
    )
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="DIR", help="output folder")
    parser.add_argument(
        "--local-dir",
        action="append",
        default=[],
        metavar="REPO_ID=FOLDER",
        help="read the files of Hub repository REPO_ID from FOLDER (a snapshot of it) instead of the Hub; "
        "repeatable; hashes are still checked",
    )
    parser.add_argument(
        "--push-to-hub",
        metavar="REPO",
        help="upload the built folder to this Hub model repository (created if missing; one entry only)",
    )


def run(args: argparse.Namespace) -> None:
    """Runs ``cascade build`` with the parsed ``args``; prints each folder written."""
    from cascade.hub.build import build, check_push_target, push_to_hub, read_local_dirs
    from cascade.hub.manifest import read_manifest

    if args.push_to_hub is not None:
        check_push_target(args.push_to_hub, args.stage)
    manifest = read_manifest(args.manifest)
    folders = build(manifest, args.stage, args.output, read_local_dirs(args.local_dir))
    for folder in folders:
        print(f"wrote {folder}")
    if args.push_to_hub is not None:
        print(f"uploaded {folders[0]} to {push_to_hub(folders[0], args.push_to_hub)}")
