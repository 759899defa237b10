"""``cascade edit INPUT -o OUT.mp4|OUT.gif --prompt TARGET``: a video edited from what it shows to a prompt."""

import argparse
from pathlib import Path

from . import add_command
from .generate import check_output, write_videos
from .generation import DEMO_MODEL_HELP, add_precision_flags, load_generator

METHODS = ("inversion", "plain_inversion", "sdedit")


def add_parsers(commands) -> None:
    description = (
        "Edit a video (an .mp4, a .gif or a folder of frames, any size and length) with a saved cascade: it is "
        "brought to the keyframes stage's frame count and size (frames sampled evenly over the clip, resized "
        "to cover the size and center-cropped), inverted under --source-prompt, regenerated under --prompt "
        "keeping the source's layout and motion, and the later stages bring it to the cascade's output size "
        "and length."
    )
    parser = add_command(commands, "edit", run, "edit a video to match a prompt", description)
    parser.add_argument("input", type=Path, help="the video to edit: .mp4, .gif, .npz or a folder of frames")
    parser.add_argument("-o", "--output", required=True, type=Path, help="output file, .mp4 or .gif")
    parser.add_argument("--prompt", required=True, help="what the edited video shows")
    parser.add_argument("--source-prompt", default="", help="what the input video shows (default: empty)")
    parser.add_argument("--model", default=None, metavar="DIR|REPO_ID", help=DEMO_MODEL_HELP)
    add_precision_flags(parser)
    parser.add_argument(
        "--method",
        choices=METHODS,
        default="inversion",
        help="inversion with self-attention injection (default), plain inversion, or SDEdit",
    )
    parser.add_argument(
        "--steps", type=int, default=50, metavar="N", help="inversion and editing steps (default 50)"
    )
    parser.add_argument(
        "--guidance", type=float, default=2.0, metavar="G", help="guidance of the edit (default 2)"
    )
    parser.add_argument(
        "--strength",
        type=float,
        default=None,
        help="how far up the noise schedule the edit starts, in (0, 1] (default: 0.8 for inversion, 1 for "
        "plain_inversion, 0.6 for sdedit)",
    )
    parser.add_argument("--frames", type=int, default=8, metavar="N", help="number of keyframes (default 8)")
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default 0)")
    parser.add_argument("--fps", type=int, default=8, help="frames per second of the file (default 8)")


def check_flags(args: argparse.Namespace) -> None:
    """The flags' values, before any model is loaded."""
    for flag in ("steps", "frames", "fps"):
        if getattr(args, flag) <= 0:
            raise ValueError(f"--{flag} must be a positive int, got {getattr(args, flag)}")
    if args.frames < 2:
        raise ValueError(f"--frames must be at least 2 (a video), got {args.frames}")
    if args.seed < 0:
        raise ValueError(f"--seed must be an int >= 0, got {args.seed}")
    if args.strength is not None and not 0 < args.strength <= 1:
        raise ValueError(f"--strength must be in (0, 1], got {args.strength}")
    if not args.prompt.strip():
        raise ValueError("--prompt must say what the edited video shows, got an empty text")


def run(args: argparse.Namespace) -> None:
    from cascade.data.video_fit import read_video_input

    check_flags(args)
    check_output(args.output)
    frames = read_video_input(args.input)[None]  # (1, F, H, W, 3) uint8
    if frames.shape[1] < 2:
        raise ValueError(f"input {str(args.input)!r} has a single frame; editing needs a video")
    cascade = load_generator(args.model, None, args.device, args.dtype)
    for name, stage in cascade.stages.items():
        stage.set_progress_bar_config(desc=name)
    result = cascade.edit(
        frames / 255.0,
        args.prompt,
        source_prompt=args.source_prompt,
        num_frames=args.frames,
        seed=args.seed,
        output_type="pil",
        method=args.method,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        strength=args.strength,
    )
    write_videos([(args.output, result.frames[0])], args.fps)
