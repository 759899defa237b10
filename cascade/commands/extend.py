"""``cascade extend INPUT -o OUT.mp4|OUT.gif --prompt TEXT --frames N``: a video made longer, its frames kept."""

import argparse
from pathlib import Path

from . import add_command
from .generate import check_output, write_videos
from .generation import DEMO_MODEL_HELP, add_precision_flags, check_generation_flags


def add_parsers(commands) -> None:
    description = (
        "Extend a video (an .mp4, a .gif, an .npz or a folder of frames, any size) with a saved cascade: its "
        "frames, resized to cover the keyframes stage's size and center-cropped, are the first keyframes, the "
        "keyframes stage makes the rest following --prompt (by reconstruction guidance; in windows of the "
        "length it was trained on when --frames is longer), and the later stages bring the whole video to the "
        "cascade's output size and length."
    )
    parser = add_command(commands, "extend", run, "extend a video, following a prompt", description)
    parser.add_argument(
        "input", type=Path, help="the video to extend: .mp4, .gif, .npz or a folder of frames"
    )
    parser.add_argument("-o", "--output", required=True, type=Path, help="output file, .mp4 or .gif")
    parser.add_argument("--prompt", required=True, help="what the video shows")
    parser.add_argument(
        "--frames",
        type=int,
        required=True,
        metavar="N",
        help="keyframes of the extended video, input frames included",
    )
    parser.add_argument("--model", default=None, metavar="DIR|REPO_ID", help=DEMO_MODEL_HELP)
    add_precision_flags(parser)
    parser.add_argument("--steps", type=int, default=None, metavar="N", help="denoising steps of every stage")
    parser.add_argument("--guidance", type=float, default=None, metavar="G", help="guidance of every stage")
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default 0)")
    parser.add_argument("--fps", type=int, default=8, help="frames per second of the file (default 8)")


def run(args: argparse.Namespace) -> None:
    from cascade.data.video_fit import read_video_input

    from .generation import fitted_frames, load_generator, stage_settings

    steps = {} if args.steps is None else {"steps": args.steps}
    check_generation_flags(None, args.seed, frames=args.frames, fps=args.fps, **steps)
    if not args.prompt.strip():
        raise ValueError("--prompt must say what the video shows, got an empty text")
    check_output(args.output)
    frames = read_video_input(args.input)  # (F, H, W, 3) uint8
    if args.frames <= len(frames):
        raise ValueError(
            f"--frames must be more than the input's {len(frames)} frames (it counts them too), got {args.frames}"
        )
    cascade = load_generator(args.model, None, args.device, args.dtype)
    for name, stage in cascade.stages.items():
        stage.set_progress_bar_config(desc=name)
    settings = stage_settings(cascade, args.steps, args.frames, args.guidance)
    settings["keyframes"]["conditioning_frames"] = fitted_frames(cascade, frames, len(frames))[None]
    result = cascade(args.prompt, stage_kwargs=settings, seed=args.seed, output_type="pil")
    write_videos([(args.output, result.frames[0])], args.fps)
