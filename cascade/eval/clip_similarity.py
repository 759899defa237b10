"""CLIPSIM: CLIP similarity between the frames of a video and its caption (Wu et al. 2021, GODIVA)."""

import numpy as np
import torch
import torch.nn.functional as F

from cascade.eval.scores import Scores
from cascade.eval.video_input import to_video_tensor
from cascade.utils.checks import check_int

DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch32"


def default_image_processor(size: int):
    """``CLIPImageProcessor`` with CLIP's preprocessing (that of ``openai/clip-vit-base-patch32``'s
    ``preprocessor_config.json``: bicubic resize of the shorter side, centre crop, CLIP's mean and std) at
    image size ``size``, for a model given with a tokenizer only. Its PIL backend, whose resize is that of
    OpenAI's CLIP preprocessing (PIL bicubic), whether or not torchvision is installed."""
    try:
        from transformers import CLIPImageProcessorPil as CLIPImageProcessor  # transformers >= 5
    except ImportError:  # transformers 4: CLIPImageProcessor is the PIL one
        from transformers import CLIPImageProcessor

    check_int("size", size, minimum=1)
    return CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})


def clip_preprocess(frames: torch.Tensor, image_processor) -> torch.Tensor:
    """CLIP model input ``(N, 3, S, S)`` of ``(N, H, W, 3)`` frames in [0, 1], through ``image_processor``
    (a transformers ``CLIPImageProcessor``), the preprocessing of published CLIPSIM and CLIPScore numbers.

    The frames are rounded to uint8 first, as the images CLIP was evaluated on are (the processor's PIL
    resize quantises float images to uint8 the same way).
    """
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[-1] != 3:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise ValueError(f"frames must be a (N, H, W, 3) tensor in [0, 1]; got {shape}")
    if not callable(image_processor):
        raise ValueError(
            f"image_processor must be a transformers CLIPImageProcessor; got {type(image_processor).__name__}"
        )
    images = (frames.float() * 255.0).round().to(torch.uint8).cpu().numpy()  # (N, H, W, 3)
    return image_processor(images=list(images), return_tensors="pt")["pixel_values"]


def _check_captions(captions, count: int) -> list[str]:
    if isinstance(captions, str) or not isinstance(captions, list | tuple):
        raise ValueError(
            f"captions must be a list of {count} strings (one per video); got {type(captions).__name__}"
        )
    if len(captions) != count or not all(isinstance(c, str) and c.strip() for c in captions):
        raise ValueError(
            f"captions must hold {count} non-empty strings, one per video; got {len(captions)} "
            f"items: {list(captions)!r:.200}"
        )
    return list(captions)


def _load_default(model_name: str):
    from transformers import CLIPModel, CLIPProcessor

    return CLIPModel.from_pretrained(model_name, use_safetensors=True), CLIPProcessor.from_pretrained(
        model_name
    )


@torch.no_grad()
def clipsim(
    videos: np.ndarray | torch.Tensor,
    captions: list[str],
    model=None,
    processor=None,
    *,
    model_name: str = DEFAULT_CLIP_MODEL,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> Scores:
    """CLIPSIM (Wu et al. 2021, "GODIVA: Generating Open-DomaIn Videos from nAtural Descriptions"): mean
    CLIP cosine similarity between each frame and the video's caption, on the 0-1 scale papers report.

    Convention: per frame ``max(cos(E_image(frame), E_text(caption)), 0)`` -- CLIPScore (Hessel et al.
    2021) with weight 1 instead of 100 -- averaged over the frames of a video, then over videos. With
    ``openai/clip-vit-base-patch32`` published MSR-VTT values are about 0.29-0.31 (e.g. Make-A-Video,
    VideoFusion). Frames are preprocessed by the processor's ``CLIPImageProcessor``
    (:func:`clip_preprocess`), as published numbers are; captions are tokenised with truncation to the
    model's context length.

    Args:
        videos: ``(B, F, H, W, 3)`` float in [0, 1] or uint8.
        captions: ``B`` non-empty strings, one per video.
        model: a loaded ``transformers.CLIPModel`` (with ``processor``); ``None`` loads ``model_name``
            with ``CLIPModel.from_pretrained`` and ``CLIPProcessor.from_pretrained``.
        processor: the ``CLIPProcessor`` of ``model`` (its tokenizer and image processor), or a CLIP tokenizer
            alone, which takes :func:`default_image_processor` at the model's image size.
        model_name: the checkpoint loaded when ``model`` is ``None``.
        batch_size: frames per image-encoder call.
        device: device the model runs on.

    Returns:
        :class:`~cascade.eval.scores.Scores` with per-video ``values`` ``(B,)`` and their mean.
    """
    check_int("batch_size", batch_size, minimum=1)
    clips = to_video_tensor(videos, "videos")  # (B, F, H, W, 3)
    captions = _check_captions(captions, clips.shape[0])
    if (model is None) != (processor is None):
        raise ValueError(
            "model and processor must be given together (or both None to load model_name); got "
            f"model={type(model).__name__}, processor={type(processor).__name__}"
        )
    if model is None:
        model, processor = _load_default(model_name)
    for part in ("text_model", "vision_model", "text_projection", "visual_projection"):
        if not hasattr(model, part):
            raise ValueError(f"model must be a transformers CLIPModel; {type(model).__name__} has no {part}")
    tokenizer = getattr(processor, "tokenizer", processor)
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is None:
        image_processor = default_image_processor(model.config.vision_config.image_size)
    model = model.to(device).eval()
    tokens = tokenizer(
        captions,
        padding=True,
        truncation=True,
        return_tensors="pt",
        max_length=model.config.text_config.max_position_embeddings,
    )
    text = model.text_model(
        input_ids=tokens["input_ids"].to(device), attention_mask=tokens["attention_mask"].to(device)
    ).pooler_output
    text = F.normalize(model.text_projection(text).float(), dim=-1)  # (B, P)
    image = []
    for batch in clips.flatten(0, 1).split(batch_size):  # (n, H, W, 3)
        pixels = clip_preprocess(batch, image_processor).to(device=device, dtype=model.dtype)  # (n, 3, S, S)
        pooled = model.vision_model(pixel_values=pixels).pooler_output
        image.append(F.normalize(model.visual_projection(pooled).float(), dim=-1))  # (n, P)
    image = torch.cat(image).reshape(clips.shape[0], clips.shape[1], -1)  # (B, F, P)
    cosine = (image * text[:, None, :]).sum(dim=-1)  # (B, F)
    return Scores.from_values(cosine.clamp(min=0.0).mean(dim=1).double().cpu().numpy())
