"""The model card (``README.md``) ``cascade build`` writes into each checkpoint folder: Hub metadata (base
model, licence, ``pipeline_tag: text-to-video``, ``library_name: diffusers``, tags), where the weights come
from, what was checked, and how to load them."""

from huggingface_hub import ModelCardData

from cascade.hub.manifest import ManifestEntry

STAGE_SUMMARIES = {
    "keyframes": (
        "KeyframesPipeline",
        "turns text into a few small frames",
        'pipe("a red circle moving right", num_frames=8)',
    ),
    "interpolation": (
        "InterpolationPipeline",
        "inserts frames between known ones (masked frame conditioning)",
        'pipe("a red circle moving right", video=frames, interpolation_factor=4)',
    ),
    "spatiotemporal_sr": (
        "SpatioTemporalSRPipeline",
        "upsamples a video with temporal layers, reading the noised low-resolution video and its noise level",
        'pipe("a red circle moving right", video=frames, noise_level=20)',
    ),
    "spatial_sr": (
        "SpatialSRPipeline",
        "upsamples each frame, reading the noised low-resolution frame and its noise level",
        'pipe("a red circle moving right", video=frames, noise_level=20)',
    ),
}
TAGS = ["text-to-video", "video-diffusion", "cascaded-diffusion", "cascade"]


def model_card(entry: ManifestEntry, saved_cascade: bool = False) -> str:
    """The ``README.md`` text for the folder built from ``entry``. ``saved_cascade``: the folder (of a
    ``shipped`` entry) is a saved :class:`cascade.CascadePipeline` rather than a single pipeline."""
    if not isinstance(entry, ManifestEntry):
        raise ValueError(f"`entry` must be a ManifestEntry, got {type(entry).__name__}.")
    metadata = ModelCardData(
        base_model=entry.base_model,
        license=entry.license,
        library_name="diffusers",
        pipeline_tag="text-to-video",
        tags=[*TAGS, entry.name],
    )
    body = _shipped_body(entry, saved_cascade) if entry.kind == "shipped" else _stage_body(entry)
    return f"---\n{metadata.to_yaml()}\n---\n\n{body}"


def _stage_body(entry: ManifestEntry) -> str:
    pipeline, summary, call = STAGE_SUMMARIES[entry.name]
    source = (
        f"[{entry.repo_id}](https://huggingface.co/{entry.repo_id}) at commit `{entry.revision}`"
        if entry.kind == "hub"
        else f"a local copy of {entry.base_model}"
        if entry.base_model
        else "a local checkpoint"  # its path is not published
    )
    options = (
        "\n".join(f"| `{key}` | `{value}` |" for key, value in entry.inflation.items()) or "| (defaults) | |"
    )
    files = "\n".join(
        f"| `{item.path}` | {f'`{item.sha256}`' if item.sha256 else 'not in the manifest'} |"
        for item in entry.files
    )
    return f"""# cascade: {entry.name} stage

The **{entry.name}** stage of a `cascade` cascaded text-to-video model: it {summary}. It is the 2D UNet
(`{entry.subfolder}/`) of {source}, inflated with temporal layers by `cascade.inflate`, with that checkpoint's
text encoder, tokenizer, scheduler{" and VAE" if "vae" in entry.components else ""}.

Every temporal layer starts as the identity and new input channels start at zero, so until the temporal layers
are trained this checkpoint generates each frame as the image model would: it is the starting point of video
training (Make-A-Video, Singer et al. 2022, arXiv:2209.14792), not a trained video model.

## Inflation

| option | value |
|---|---|
{options}

## Files of the base checkpoint

The build checked the sha256 of each file whose hash is given.

| file | sha256 |
|---|---|
{files}

## Loading

With the `cascade` package installed:

```python
from cascade import {pipeline}

pipe = {pipeline}.from_pretrained("path/or/repo-id")
frames = {call}.frames
```

With diffusers' `DiffusionPipeline` (the checkpoint carries the pipeline's code, which imports `cascade`):

```python
from diffusers import DiffusionPipeline

pipe = DiffusionPipeline.from_pretrained("path/or/repo-id", trust_remote_code=True)
```

## Licence

`{entry.license}`, the licence of the base checkpoint, whose terms apply to these weights.
"""


def _shipped_body(entry: ManifestEntry, saved_cascade: bool) -> str:
    diffusers_loading = (
        'from diffusers import DiffusionPipeline\n\npipe = DiffusionPipeline.from_pretrained("path/or/repo-id", '
        "trust_remote_code=True)"
    )
    loading = (
        'from cascade import CascadePipeline\n\ncascade = CascadePipeline.from_pretrained("path/or/repo-id")\n'
        'frames = cascade("a red circle moving right", seed=0).frames\n\n'
        "# or with diffusers' DiffusionPipeline (the folder's code files import `cascade`):\n"
        + diffusers_loading
        if saved_cascade
        else diffusers_loading
    )
    return f"""# cascade: {entry.name}

{entry.description or "A model saved by the cascade project."}

## Loading

```python
{loading}
```

The command line reads a folder (for a Hub repository, the one `huggingface_hub.snapshot_download("repo-id")`
returns): `cascade generate "a red circle moving right" --model path/to/folder -o video.mp4`.

## Licence

`{entry.license}`.
"""
