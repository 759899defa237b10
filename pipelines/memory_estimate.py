"""The memory pre-flight of a stage call: its peak memory estimated from the shapes, before any model runs.

A request that cannot fit (``--frames 100000``) used to run until the kernel's out-of-memory killer ended it,
with no message. Every stage call (:func:`~cascade.pipelines.stage_call.stage_call`), and a cascade for all
its stages at once, estimates its peak from the frames, sizes, batch (guidance doubles the UNet's), frame
windows and chunks, and refuses one larger than the memory the device has free with
:class:`RequestTooLargeError`, naming the argument that bounds the largest part.

The estimate adds, in the UNet's and VAE's dtypes:

- the **video tensors**: the sample and the copies a step makes (scaled input, prediction, the scheduler's
  state, the windows' blend), and the conditioning, for the whole video;
- the larger of the **UNet's working set** for the frames it sees at once (a window, a chunk, else the whole
  video: the skip connections the down path keeps for the up path, and the maps the widest block holds while
  it runs; with reconstruction guidance, the activations a backward pass keeps; with ControlNets, the
  residuals each adds to those skip connections, held while the UNet runs) and the **VAE decoder's** for
  ``decode_chunk_size`` frames;
- the **output frames** in float32 and their conversion to ``np``/``pil``.

The constants were fitted on the demo cascade (CPU, float32) so that the estimate is within 2x of the
measured increase of peak resident memory (``tests/test_memory_estimate.py``). Memory the process holds
already (the models) is outside the estimate: the free memory it is compared with excludes it.
"""

import inspect
import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from cascade.models.video_unet import VideoUNet
from cascade.utils.checks import check_int, check_number

from .control import controlnet_list
from .inputs import video_to_tensor

# maps of the widest UNet level alive at once while a block runs, beyond the skip connections
UNET_WORKING_MAPS = 8
# more of them in a VideoUNet: its temporal layers' frame-major copies of the maps
TEMPORAL_WORKING_MAPS = 8
# with reconstruction guidance the UNet's forward pass is kept for the gradient: this many times the working set
GRADIENT_FACTOR = 15
# copies of the whole sample a denoising step holds (sample, scaled input, prediction, step output, blend, noise)
SAMPLE_COPIES = 8
# maps of the VAE decoder's widest level alive at once, per decoded frame
VAE_WORKING_MAPS = 8
# float32 copies of the output frames (the decoded pt frames, the np/pil conversion, the frames returned)
OUTPUT_COPIES = 3
GIB = 2**30


class RequestTooLargeError(ValueError):
    """A call whose estimated peak memory is more than its device has free; a ``ValueError``, like any request
    that cannot be served (the command line reports it in one line)."""


@dataclass(frozen=True)
class MemoryEstimate:
    """A stage call's estimated peak memory in bytes, by part: ``video`` (the sample and conditioning),
    ``unet`` (its working set), ``decode`` (the VAE's) and ``frames`` (the output)."""

    video: int
    unet: int
    decode: int
    frames: int

    @property
    def peak(self) -> int:
        return self.video + max(self.unet, self.decode) + self.frames

    @property
    def largest_part(self) -> str:
        parts = {"video": self.video, "unet": self.unet, "decode": self.decode, "frames": self.frames}
        return max(parts, key=parts.get)


def _levels(config) -> list[tuple[int, int]]:
    """``(channels, layers)`` of each level of a diffusers UNet's or VAE's ``config``, widest-area first."""
    layers = config.layers_per_block
    layers = [layers] * len(config.block_out_channels) if isinstance(layers, int) else list(layers)
    return list(zip(config.block_out_channels, layers, strict=True))


def skip_elements(config, height: int, width: int) -> int:
    """Elements of the skip connections the down path of a diffusers UNet (or ControlNet: its residuals) of
    ``config`` keeps for one ``height`` x ``width`` image: ``conv_in``'s output, each ResNet's, each
    downsampler's."""
    area = height * width
    skips = config.block_out_channels[0] * area  # conv_in's output
    levels = _levels(config)
    for level, (channels, layers) in enumerate(levels):
        level_area = area // 4**level
        downsampled = channels * level_area // 4 if level < len(levels) - 1 else 0
        skips += layers * channels * level_area + downsampled
    return skips


def unet_elements(config, height: int, width: int, temporal: bool) -> int:
    """Activation elements a diffusers UNet of ``config`` holds at its peak for one ``height`` x ``width``
    image (no gradient): the skip connections of the down path and the working maps of its widest level,
    more of them when it is inflated with ``temporal`` layers."""
    area = height * width
    widest = max(channels * area // 4**level for level, (channels, _) in enumerate(_levels(config)))
    working = UNET_WORKING_MAPS + (TEMPORAL_WORKING_MAPS if temporal else 0)
    return skip_elements(config, height, width) + working * widest


def control_elements(controlnet, height: int, width: int) -> int:
    """Elements of the residuals the ControlNets of a pipeline's ``controlnet`` component (none, one, or a
    ``MultiControlNetModel``) hand the UNet for one ``height`` x ``width`` frame: each net's down residuals
    and its mid-block residual."""
    total = 0
    for net in controlnet_list(controlnet):
        levels = _levels(net.config)
        mid = levels[-1][0] * (height * width // 4 ** (len(levels) - 1))
        total += skip_elements(net.config, height, width) + mid
    return total


def vae_decoder_elements(config, height: int, width: int) -> int:
    """Activation elements a diffusers VAE of ``config`` holds while decoding one ``height`` x ``width`` frame:
    the working maps of its widest level (the last up block, at full size)."""
    area = height * width
    widest = max(channels * area // 4**level for level, (channels, _) in enumerate(_levels(config)))
    return VAE_WORKING_MAPS * widest


def estimate_stage_memory(
    pipeline, videos: int, frames: int, height: int, width: int, arguments: dict
) -> MemoryEstimate:
    """The peak of a call of stage ``pipeline`` making ``videos`` videos of ``frames`` frames of ``height`` x
    ``width`` pixels with ``arguments`` (its ``__call__``'s, defaults filled in)."""
    unet, factor = pipeline.spatial_unet, pipeline.vae_scale_factor
    unet_bytes = unet.dtype.itemsize
    h, w = height // factor, width // factor
    channels = unet.config.out_channels
    extra = unet.config.in_channels - channels  # conditioning channels read beside the sample
    sample = videos * frames * h * w  # elements of one channel of the whole sample
    video = (SAMPLE_COPIES * channels + extra) * sample * unet_bytes

    guided = 2 if arguments.get("guidance_scale", 0) > 1 else 1
    if "frame_chunk_size" in arguments:  # frames of all videos folded into a batch, a chunk at a time
        seen = min(arguments["frame_chunk_size"], videos * frames)
    else:
        window = arguments.get("window") or frames
        seen = videos * min(window, frames)
    temporal = isinstance(pipeline.unet, VideoUNet)
    activations = unet_elements(unet.config, h, w, temporal)
    activations += control_elements(getattr(pipeline, "controlnet", None), h, w)
    working = guided * seen * activations * unet_bytes
    if uses_reconstruction_guidance(arguments, frames):
        working *= GRADIENT_FACTOR

    decode = 0
    vae = getattr(pipeline, "vae", None)
    if vae is not None and arguments.get("output_type") != "latent":
        chunk = arguments.get("decode_chunk_size") or decode_default(arguments, videos * frames)
        decode = (
            min(chunk, videos * frames) * vae_decoder_elements(vae.config, height, width) * vae.dtype.itemsize
        )
    output = (
        0
        if arguments.get("output_type") == "latent"
        else OUTPUT_COPIES * videos * frames * 3 * height * width * 4
    )
    return MemoryEstimate(video=video, unet=working, decode=decode, frames=output)


def uses_reconstruction_guidance(arguments: dict, frames: int) -> bool:
    """Whether a keyframes call runs reconstruction guidance (a gradient through the UNet): given frames, or
    windows after the first, sampled by the reconstruction method."""
    if arguments.get("conditioning_method") != "reconstruction":
        return False
    window = arguments.get("window")
    given = arguments.get("image") is not None or arguments.get("conditioning_frames") is not None
    return given or (window is not None and window < frames)


def decode_default(arguments: dict, frames: int) -> int:
    """Frames the VAE decodes at a time when ``decode_chunk_size`` is ``None``: the stage's window or chunk,
    else every frame."""
    return arguments.get("frame_chunk_size") or arguments.get("window") or frames


def stage_output(
    pipeline, frames: int | None, height: int | None, width: int | None, settings: dict
) -> tuple:
    """``(frames, height, width)`` stage ``pipeline`` outputs with ``settings`` for input frames of ``height`` x
    ``width`` (``frames=None`` for a stage that makes frames from noise: its ``num_frames``, ``height`` and
    ``width``, its default size where they are unset), through its ``output_shape``."""
    out_frames, out_height = pipeline.output_shape(frames, height, settings)
    if frames is None:
        return out_frames, settings.get("height") or out_height, settings.get("width") or out_height
    return out_frames, out_height, pipeline.output_shape(frames, width, settings)[1]


def call_shape(pipeline, arguments: dict) -> tuple[int, int, int, int]:
    """``(videos, frames, height, width)`` a stage call with ``arguments`` outputs: videos are the prompts (or
    embeddings) times ``num_videos_per_prompt``; frames and size follow the input ``video`` for a stage that
    takes one (:func:`stage_output`)."""
    prompts = arguments.get("prompt")
    if prompts is None:
        batch = arguments["prompt_embeds"].shape[0]
    else:
        batch = 1 if isinstance(prompts, str) else len(prompts)
    videos = batch * arguments["num_videos_per_prompt"]
    frames = height = width = None
    if "video" in arguments:
        _, _, frames, height, width = video_to_tensor(arguments["video"], pipeline.video_processor).shape
    return videos, *stage_output(pipeline, frames, height, width, arguments)


def bounding_argument(estimate: MemoryEstimate, arguments: dict) -> str:
    """The argument of a stage call that bounds the largest part of ``estimate``: its window or chunk for the
    UNet, ``decode_chunk_size`` for the VAE, else its frames (``video`` or ``num_frames``)."""
    part = estimate.largest_part
    if part == "unet" and "frame_chunk_size" in arguments:
        return "frame_chunk_size"
    if part == "unet" and "window" in arguments:
        return "window"
    if part == "decode":
        return "decode_chunk_size"
    return "video" if "video" in arguments else "num_frames"


def change(argument: str, written: str) -> str:
    """What to do about ``argument`` (:func:`bounding_argument`), written ``written`` in the message."""
    return {
        "num_frames": f"lower {written} (or the videos in the batch)",
        "video": f"give a {written} with fewer or smaller frames (or fewer videos)",
        "window": f"set {written} to fewer frames (the frames the UNet sees at once)",
        "frame_chunk_size": f"lower {written}",
        "decode_chunk_size": f"lower {written}",
    }[argument]


def available_memory(device: torch.device) -> int | None:
    """Bytes that ``device`` can still allocate: for CUDA the driver's free memory plus what torch's caching
    allocator holds unused; for the CPU the kernel's ``MemAvailable`` (and a cgroup v2 limit, when lower).
    ``None`` where it cannot be read (then nothing is refused)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if device.type != "cpu":
        return None
    meminfo = Path("/proc/meminfo")
    if not meminfo.is_file():
        return None
    fields = dict(line.split(":", 1) for line in meminfo.read_text().splitlines() if ":" in line)
    if "MemAvailable" not in fields:
        return None
    available = int(fields["MemAvailable"].split()[0]) * 1024
    limit, current = Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current")
    if limit.is_file() and current.is_file() and limit.read_text().strip().isdigit():
        available = min(available, int(limit.read_text()) - int(current.read_text()))
    return available


def describe(estimate: MemoryEstimate) -> str:
    """The parts of ``estimate`` in GiB, for a message."""
    parts = {
        "the video tensors": estimate.video,
        "the UNet's working set": estimate.unet,
        "the VAE decode": estimate.decode,
        "the output frames": estimate.frames,
    }
    return ", ".join(f"{name} {value / GIB:.2f}" for name, value in parts.items() if value)


def refuse_if_too_large(stage: str, estimate: MemoryEstimate, device: torch.device, change: str) -> None:
    """Raises :class:`RequestTooLargeError` when ``estimate`` does not fit the memory ``device`` has free,
    naming ``stage``, the estimate, the memory available and ``change`` (what to change)."""
    available = available_memory(device)
    if available is None or estimate.peak <= available:
        return
    raise RequestTooLargeError(
        f"{stage}: this request needs about {estimate.peak / GIB:.2f} GiB of {device.type} memory at its "
        f"peak ({describe(estimate)} GiB) and {max(available, 0) / GIB:.2f} GiB are free; {change}."
    )


def skipped() -> bool:
    """Whether the pre-flight is turned off (``CASCADE_SKIP_MEMORY_CHECK=1``): for a device whose free memory
    misleads it (swap, unified memory)."""
    return os.environ.get("CASCADE_SKIP_MEMORY_CHECK") == "1"


def preflight(pipeline, arguments: dict) -> None:
    """Estimates a stage call's peak from its (checked) ``arguments`` and refuses it with
    :class:`RequestTooLargeError` when it cannot fit, naming the argument to lower."""
    if skipped():
        return
    videos, frames, height, width = call_shape(pipeline, arguments)
    estimate = estimate_stage_memory(pipeline, videos, frames, height, width, arguments)
    argument = bounding_argument(estimate, arguments)
    what = change(argument, f"`{argument}`")
    refuse_if_too_large(type(pipeline).__name__, estimate, pipeline._execution_device, what)


def preflight_clips(pipeline, clean: torch.Tensor, arguments: dict, branches: int = 1) -> None:
    """Estimates the peak of denoising the clips ``clean`` ``(B, C, F, h, w)`` with ``arguments``, ``branches``
    copies side by side in one batch (an edit's source and target), as ``invert`` and ``edit`` run them
    (:mod:`.editing`), and refuses it like :func:`preflight`, naming ``video``."""
    if skipped():
        return
    videos, _, frames, height, width = clean.shape
    factor = pipeline.vae_scale_factor
    estimate = estimate_stage_memory(
        pipeline, videos * branches, frames, height * factor, width * factor, arguments
    )
    what = change("video", "`video`")
    refuse_if_too_large(type(pipeline).__name__, estimate, pipeline._execution_device, what)


# the settings the estimate of a stage in a cascade reads before the stage has checked them, and their minimum
SHAPE_SETTINGS = {
    "num_frames": 1,
    "height": 1,
    "width": 1,
    "window": 1,
    "window_overlap": 0,
    "frame_chunk_size": 1,
    "decode_chunk_size": 1,
    "interpolation_factor": 1,
}


def check_shape_settings(stage: str, settings: dict) -> None:
    """Checks the settings of ``stage`` in a cascade's ``stage_kwargs`` that its estimate reads (the stage checks
    them all again when it runs), naming each as ``stage_kwargs[stage][name]``."""
    for name, minimum in SHAPE_SETTINGS.items():
        if settings.get(name) is not None:
            check_int(f"stage_kwargs[{stage!r}][{name!r}]", settings[name], minimum=minimum)
    if "guidance_scale" in settings:
        check_number(f"stage_kwargs[{stage!r}]['guidance_scale']", settings["guidance_scale"], minimum=0.0)


def preflight_cascade(
    cascade, videos: int, video_shape: tuple | None, stage_kwargs: dict, keep: bool
) -> None:
    """Refuses a cascade call before any stage runs when one stage cannot fit: each stage's estimate from the
    shapes the stages before it output, for ``videos`` prompts (or input videos of ``video_shape``
    ``(frames, height, width)``), with its ``stage_kwargs`` (the cascade's defaults filled in), plus the
    frames held from earlier stages (each one's when ``keep``, the stage outputs being returned)."""
    if skipped():
        return
    frames, height, width = video_shape or (None, None, None)
    held = 0
    first = next(iter(cascade.stages))
    for name, pipeline in cascade.stages.items():
        settings = stage_kwargs.get(name, {})
        check_shape_settings(name, settings)
        arguments = {
            parameter: settings.get(parameter, pipeline.call_default(parameter))
            for parameter in inspect.signature(pipeline.__call__).parameters
        }
        arguments["output_type"] = "pt"
        frames, height, width = stage_output(pipeline, frames, height, width, settings)
        estimate = estimate_stage_memory(pipeline, videos, frames, height, width, arguments)
        estimate = replace(estimate, video=estimate.video + held)
        argument = bounding_argument(estimate, arguments)
        if argument in ("num_frames", "video") and first == "keyframes":
            what = change(
                "num_frames", "`stage_kwargs['keyframes']['num_frames']` (`--frames` of `cascade generate`)"
            )
        elif argument == "video":
            what = change("video", "`video`")
        else:
            what = change(argument, f"`stage_kwargs[{name!r}][{argument!r}]`")
            if first == "keyframes":
                what += ", or make fewer keyframes (`stage_kwargs['keyframes']['num_frames']`, `--frames`)"
        refuse_if_too_large(
            f"stage {name!r} ({type(pipeline).__name__})", estimate, pipeline._execution_device, what
        )
        output = videos * frames * 3 * height * width * 4  # the stage's pt frames, held for the next one
        held = held + output if keep else output
