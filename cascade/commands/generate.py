"""``cascade generate PROMPT -o OUT.mp4|OUT.gif``: a video from a prompt with a saved cascade."""

import argparse
import os
from pathlib import Path

from . import add_command
from .generation import DEMO_MODEL_HELP, add_generation_flags, add_precision_flags, check_generation_flags

SUFFIXES = (".mp4", ".gif")


def add_parsers(commands) -> None:
    description = (
        "Generate a video from a prompt with a saved cascade (or a saved keyframes pipeline) and write it as "
        ".mp4 or .gif. Each stage shows a progress bar."
    )
    parser = add_command(commands, "generate", run, "generate a video from a prompt", description)
    parser.add_argument("prompt", help="what the video shows")
    parser.add_argument("-o", "--output", required=True, type=Path, help="output file, .mp4 or .gif")
    parser.add_argument("--model", default=None, metavar="DIR|REPO_ID", help=DEMO_MODEL_HELP)
    add_precision_flags(parser)
    add_generation_flags(parser, "--frames", steps=None, seed_help="random seed (default 0)")
    parser.add_argument("--fps", type=int, default=8, help="frames per second of the file (default 8)")
    parser.add_argument(
        "--image",
        type=Path,
        metavar="FIRST.png",
        help="the video's first frame (image-to-video), resized to cover the keyframes' size and center-cropped",
    )
    parser.add_argument(
        "--control",
        type=Path,
        metavar="VIDEO",
        help="a control video for a model whose keyframes stage has a ControlNet (an .mp4, .gif or folder of "
        "frames): sampled evenly to --frames frames and fitted to the keyframes' size",
    )
    parser.add_argument(
        "--long-video",
        choices=("coarse_to_fine", "extend"),
        default="coarse_to_fine",
        help="how --frames beyond the length the keyframes stage was trained on are made: coarse_to_fine (that "
        "many keyframes spread over the video, then the frames between: the prompt's motion in more frames; the "
        "default) or extend (window after window, each continuing the last: a longer time, as `cascade extend` "
        "makes it)",
    )
    parser.add_argument(
        "--save-intermediates",
        action="store_true",
        help="also write each earlier stage's frames next to the output, as OUT.<stage>.<suffix>",
    )


def check_output(path: Path) -> None:
    """``--output``: a .mp4 or .gif path in a writable folder."""
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(f"--output must end in .mp4 or .gif, got {str(path)!r}")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise ValueError(f"--output folder {str(folder)!r} does not exist or is not writable")


def write_videos(videos: list[tuple[Path, list]], fps: int) -> None:
    """Writes each ``(path, frames)``: all of them, or (when one fails) none."""
    from cascade.data.media_io import write_video

    written = []
    try:
        for path, frames in videos:
            write_video(frames, path, fps)
            written.append(path)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    for path in written:
        print(f"wrote {path}")


def run(args: argparse.Namespace) -> None:
    from .generation import fitted_frames, load_generator, stage_settings

    steps = {} if args.steps is None else {"steps": args.steps}
    check_generation_flags(args.stages, args.seed, frames=args.frames, fps=args.fps, **steps)
    check_output(args.output)
    image = None
    if args.image is not None:
        from cascade.data.media_io import read_image

        image = read_image(args.image)  # (H, W, 3) uint8
    control = None
    if args.control is not None:
        from cascade.data.video_fit import read_video_input

        control = read_video_input(args.control)  # (F, H, W, 3) uint8
    cascade = load_generator(args.model, args.stages, args.device, args.dtype)
    for name, stage in cascade.stages.items():
        stage.set_progress_bar_config(desc=name)
    settings = stage_settings(cascade, args.steps, args.frames, args.guidance, args.long_video)
    if image is not None:
        settings["keyframes"]["image"] = fitted_frames(cascade, image[None], 1)[0]  # (S, S, 3)
    if control is not None:
        if getattr(cascade.stages["keyframes"], "controlnet", None) is None:
            raise ValueError(
                "--control needs a model whose keyframes stage has a controlnet; this one has none"
            )
        settings["keyframes"]["control_video"] = fitted_frames(cascade, control, args.frames)[
            None
        ]  # (1, F, S, S, 3)
    result = cascade(
        args.prompt, stage_kwargs=settings, seed=args.seed, output_type="pil", return_stage_outputs=True
    )
    videos = []
    if args.save_intermediates:
        for name, frames in list(result.stage_frames.items())[:-1]:
            path = args.output.with_name(f"{args.output.stem}.{name}{args.output.suffix}")
            first = (frames[0].permute(0, 2, 3, 1) * 255).round().byte().cpu().numpy()  # (F, H, W, 3)
            videos.append((path, list(first)))
    videos.append((args.output, result.frames[0]))
    write_videos(videos, args.fps)
