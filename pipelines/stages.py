"""The stages of the cascade, in cascade order: the one list every part of the package reads.

Each entry names a stage, its pipeline class, what it conditions on and how it changes the video. What a
stage *does* with them (the frames and size it outputs, the input sizes it takes) is a method of its
pipeline (:meth:`~cascade.pipelines.stage_base.VideoStagePipeline.output_shape`,
:meth:`~cascade.pipelines.stage_base.VideoStagePipeline.input_size_problem`), not a branch on its name.

Importing this module imports no model code (``cascade --help`` lists the stages without torch);
:attr:`Stage.pipeline_class` imports the pipeline when it is asked for.
"""

import importlib
from dataclasses import dataclass

CONDITIONINGS = ("text", "known_frames", "low_res")


@dataclass(frozen=True)
class Stage:
    """A stage of the cascade.

    Attributes:
        name: the stage's name in ``stage_kwargs``, saved cascades, recipes and ``--stages``.
        pipeline: the name of its pipeline class in ``cascade.pipelines``.
        conditioning: what its UNet reads besides the text: ``"text"`` nothing (it starts the cascade),
            ``"known_frames"`` the previous stage's frames and their mask (masked frame conditioning),
            ``"low_res"`` the previous stage's video, noise-augmented, with the noise level as class label.
        per_frame: its UNet denoises every frame on its own (no temporal layers needed).
        changes: how it changes the video, in words (the pipeline's ``output_shape`` computes it).
    """

    name: str
    pipeline: str
    conditioning: str
    per_frame: bool
    changes: str

    @property
    def pipeline_class(self) -> type:
        """The stage's pipeline class (imports the pipelines)."""
        return getattr(importlib.import_module("cascade.pipelines"), self.pipeline)

    @property
    def takes_video(self) -> bool:
        """Whether the stage's input is a video (every stage but the first)."""
        return self.conditioning != "text"

    def conditioning_channels(self, sample_channels: int) -> int:
        """Input channels its UNet reads after the ``sample_channels`` of the noisy sample: the known frames
        and their mask, or the low-resolution RGB frames."""
        return {"text": 0, "known_frames": sample_channels + 1, "low_res": 3}[self.conditioning]

    @property
    def flag(self) -> str:
        """The stage as a command-line flag: ``--spatial-sr``."""
        return "--" + self.name.replace("_", "-")


STAGES = (
    Stage("keyframes", "KeyframesPipeline", "text", False, "makes F small frames from the prompt"),
    Stage(
        "interpolation", "InterpolationPipeline", "known_frames", False, "F frames -> (F - 1) * factor + 1"
    ),
    Stage("spatiotemporal_sr", "SpatioTemporalSRPipeline", "low_res", False, "frame size x upscale_factor"),
    Stage("spatial_sr", "SpatialSRPipeline", "low_res", True, "frame size x upscale_factor, frame by frame"),
)
STAGE_NAMES = tuple(stage.name for stage in STAGES)
CONDITIONING_STAGES = tuple(stage.name for stage in STAGES if stage.takes_video)
SUPER_RESOLUTION_STAGES = tuple(stage.name for stage in STAGES if stage.conditioning == "low_res")


def stage(name: str) -> Stage:
    """The :class:`Stage` called ``name``."""
    for entry in STAGES:
        if entry.name == name:
            return entry
    raise ValueError(f"`name` must be a stage of the cascade, one of {list(STAGE_NAMES)}; got {name!r}.")
