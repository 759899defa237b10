"""LoRAs of a 2D text-to-image model (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models",
arXiv:2106.09685) loaded into a stage: diffusers' ``StableDiffusionLoraLoaderMixin`` (diffusers or Kohya format,
through peft), with the ``unet`` weights going into the inflated UNet's 2D UNet, whose module names they use.
Temporal layers are left alone, as Make-A-Video and AnimateDiff keep motion apart from appearance."""

from diffusers.loaders import StableDiffusionLoraLoaderMixin

from cascade.models.video_unet import VideoUNet


class VideoLoraLoaderMixin(StableDiffusionLoraLoaderMixin):
    """``pipe.load_lora_weights(path_or_repo_or_state_dict)``, ``set_adapters``, ``fuse_lora`` and the rest of
    diffusers' LoRA management for a stage whose ``unet`` is a :class:`~cascade.VideoUNet` (or a 2D UNet)."""

    @classmethod
    def load_lora_into_unet(cls, state_dict, network_alphas, unet, **kwargs):
        """Loads the ``unet.``-prefixed LoRA weights of ``state_dict`` into ``unet``'s 2D UNet; see diffusers'
        ``StableDiffusionLoraLoaderMixin.load_lora_into_unet``."""
        spatial_unet = unet.unet if isinstance(unet, VideoUNet) else unet
        super().load_lora_into_unet(state_dict, network_alphas, spatial_unet, **kwargs)
