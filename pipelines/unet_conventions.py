"""FreeU and fused QKV projections on a stage pipeline, as diffusers' Stable Diffusion pipelines have them.

diffusers gives its UNet pipelines ``enable_freeu`` / ``disable_freeu`` (FreeU: Si et al. 2023, "FreeU: Free
Lunch in Diffusion U-Net", arXiv:2309.11497) and ``fuse_qkv_projections`` / ``unfuse_qkv_projections``
through ``StableDiffusionMixin``; each calls the UNet's method of the same name, which
:class:`cascade.VideoUNet` has (and a plain ``UNet2DConditionModel``, the spatial SR stage's option, too).
Attention slicing needs no mixin: every ``DiffusionPipeline`` has ``enable_attention_slicing``, which calls
``set_attention_slice`` on the components that have it.
"""

from diffusers.pipelines.pipeline_utils import StableDiffusionMixin


class UNetConventionsMixin(StableDiffusionMixin):
    """diffusers' ``StableDiffusionMixin`` for a pipeline whose ``vae`` is optional: in pixel space (no VAE)
    ``fuse_qkv_projections()`` and ``unfuse_qkv_projections()`` act on the UNet alone, where diffusers would
    raise for the VAE that is not there."""

    def fuse_qkv_projections(self, unet: bool = True, vae: bool = True) -> None:
        """Fuses the query, key and value projections of the UNet's attention (``unet``) and of the VAE's
        (``vae``, when the pipeline has a VAE): the same frames up to float rounding."""
        super().fuse_qkv_projections(unet=unet, vae=vae and self.vae is not None)

    def unfuse_qkv_projections(self, unet: bool = True, vae: bool = True) -> None:
        """Undoes :meth:`fuse_qkv_projections` on the UNet (``unet``) and the VAE (``vae``, when there is one)."""
        super().unfuse_qkv_projections(unet=unet, vae=vae and self.vae is not None)
