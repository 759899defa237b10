"""DDIM inversion of a video and prompt-driven editing of it, on a text-conditioned stage (the keyframes).

- **Inversion** (Song et al. 2021, "Denoising Diffusion Implicit Models", arXiv:2010.02502, sec. 4.3; Dhariwal
  & Nichol 2021, appendix F): the deterministic DDIM update run backwards, clean video to noise, with diffusers'
  ``DDIMInverseScheduler``; the model's own schedule, prediction type (epsilon or v) and VAE (latent stages).
  :meth:`EditingMixin.invert` returns the noise and the whole trajectory.
- **Editing** (``method="inversion"``, the default): the video inverted over the first ``strength`` of the
  steps (not up to the schedule's top, where the model decides where the object is), then regenerated twice in
  one batch, a source branch under the source prompt and a target branch under the target prompt. After every
  step the source branch is put back on the inversion trajectory (Ju et al. 2023, "Direct Inversion",
  arXiv:2310.01506), so its attention is the source video's, and the target branch gets the same correction,
  so it differs from the source only by what the change of prompt changes (the per-step corrections play the
  part of the noise maps of Huberman-Spiegelglas et al. 2024, "An Edit Friendly DDPM Noise Space",
  arXiv:2304.06140); for the first ``attention_injection`` fraction of the steps the target branch
  attends with the source branch's self-attention queries and keys (Plug-and-Play, FateZero, TokenFlow:
  :mod:`cascade.models.attention_injection`), which keeps the source's layout and motion. With guidance above
  1 the source prompt is the negative prompt of both branches (negative-prompt inversion, Miyake et al. 2023,
  arXiv:2305.16807), so guidance pushes from the source towards the target and the source branch reconstructs.
- Baselines: ``method="plain_inversion"`` (the inverted noise regenerated under the target prompt alone) and
  ``method="sdedit"`` (the video noised to ``strength`` of the way up the schedule and denoised under the target
  prompt: Meng et al. 2021, "SDEdit", arXiv:2108.01073).
"""

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from cascade.models.attention_injection import self_attention_injection
from cascade.utils.checks import check_choice, check_int, check_number

from .inputs import video_to_tensor
from .memory_estimate import preflight_clips
from .stage_call import StageCall

EDIT_METHODS = ("inversion", "plain_inversion", "sdedit")
DEFAULT_STRENGTH = {"inversion": 0.8, "plain_inversion": 1.0, "sdedit": 0.6}


@dataclass
class InversionOutput(BaseOutput):
    """``latents``: the inverted noise ``(B, C, F, h, w)``; ``trajectory``: the sample after each inversion step
    ``(steps, B, C, F, h, w)``, from the least noisy to ``latents``; ``timesteps``: the timestep of each."""

    latents: torch.Tensor
    trajectory: torch.Tensor
    timesteps: torch.Tensor


@contextmanager
def _using_scheduler(pipe, scheduler):
    """``pipe.scheduler`` is ``scheduler`` for the ``with`` block."""
    original = pipe.scheduler
    pipe.scheduler = scheduler
    try:
        yield scheduler
    finally:
        pipe.scheduler = original


def steps_run(num_inference_steps: int, strength: float) -> int:
    """The last ``strength`` of ``num_inference_steps`` steps, at least one."""
    return max(1, int(num_inference_steps * strength))


def _prompts(name: str, prompt, count: int) -> list[str]:
    """``prompt`` (a str, or a list of one str per video) as ``count`` texts."""
    prompts = [prompt] * count if isinstance(prompt, str) else prompt
    if not isinstance(prompts, list) or len(prompts) != count or not all(isinstance(p, str) for p in prompts):
        raise ValueError(f"`{name}` must be a str or a list of {count} str (one per video), got {prompt!r}.")
    return prompts


class EditingMixin:
    """:meth:`invert` and :meth:`edit` for a stage pipeline whose UNet reads nothing but the text (its noisy
    sample is the whole input)."""

    def _inversion_schedulers(self) -> tuple[DDIMScheduler, DDIMInverseScheduler]:
        """DDIM and its inverse on the pipeline's training schedule, paired step for step ("trailing" spacing,
        which both take; no clipping, which would break the pairing)."""
        options = {"timestep_spacing": "trailing", "clip_sample": False}
        config = self.scheduler.config
        return DDIMScheduler.from_config(config, **options), DDIMInverseScheduler.from_config(
            config, **options
        )

    def _clean_sample(self, video, decode_chunk_size: int | None) -> torch.Tensor:
        """``video`` (any form a stage takes) as the clean sample ``(B, C, F, h, w)`` the UNet denoises."""
        if self.unet.conditioning_channels:
            raise ValueError(
                f"inversion and editing need a stage whose UNet reads only the text; this `unet` reads "
                f"{self.unet.conditioning_channels} conditioning channels."
            )
        pixels = video_to_tensor(video, self.video_processor).to(self._execution_device)  # (B, 3, F, H, W)
        multiple = self.size_multiple
        if pixels.shape[-2] % multiple or pixels.shape[-1] % multiple:
            raise ValueError(
                f"`video` frames must have a height and width that are multiples of {multiple} for this model, "
                f"got {pixels.shape[-2]}x{pixels.shape[-1]}."
            )
        return self.encode_frames(pixels, decode_chunk_size).to(self.unet.dtype)

    def _check(self, clean: torch.Tensor, arguments: dict) -> None:
        """Checks the common ``arguments`` of a call on the clips ``clean`` ``(B, C, F, h, w)``."""
        call = StageCall.with_defaults(**arguments)
        self.check_common_inputs(lambda videos: (videos, *clean.shape[1:]), **call.common())

    def _call(self, clean: torch.Tensor, **arguments) -> StageCall:
        """A checked and opened :class:`StageCall` of ``arguments`` for the clips ``clean`` ``(B, C, F, h, w)``."""
        self._check(clean, arguments)
        return self.begin_call(StageCall.with_defaults(**arguments))

    def _invert(
        self, clean: torch.Tensor, call: StageCall, steps_run: int, progress_bar=None
    ) -> InversionOutput:
        """The first ``steps_run`` inversion steps of ``call.num_inference_steps`` (advancing ``progress_bar``,
        a bar of their own when ``None``)."""
        trajectory = []

        def record(pipe, step, timestep, tensors):
            trajectory.append(tensors["latents"])

        call.callback_on_step_end, call.callback_on_step_end_tensor_inputs = record, ["latents"]
        _, inverse = self._inversion_schedulers()
        with _using_scheduler(self, inverse):
            latents = self.denoise(call, clean, end_step=steps_run, progress_bar=progress_bar)
        return InversionOutput(
            latents=latents, trajectory=torch.stack(trajectory), timesteps=inverse.timesteps[:steps_run]
        )

    @torch.no_grad()
    def invert(
        self,
        video,
        prompt: str | list[str] = "",
        num_inference_steps: int = 50,
        guidance_scale: float = 1.0,
        negative_prompt: str | list[str] | None = None,
        strength: float = 1.0,
        decode_chunk_size: int | None = None,
    ) -> InversionOutput:
        """DDIM inversion of ``video`` (a stage's output: ``np`` ``(B, F, H, W, 3)`` or ``pt`` ``(B, F, 3, H, W)`` in
        [0, 1], or PIL frames) under ``prompt`` (a text for every clip, or one per clip; ``""`` by default): the
        noise that DDIM with ``num_inference_steps`` steps ("trailing" spacing, no clipping) turns back into it.
        Guidance above 1 is possible but makes the inversion drift; at 1 (the default) it is exact up to the
        model's error. ``strength`` in (0, 1]: invert only that fraction of the steps, to the noise level from
        which DDIM's last ``strength`` of the steps start (1: the schedule's top)."""
        check_number("strength", strength, greater_than=0.0, maximum=1.0)
        clean = self._clean_sample(video, decode_chunk_size)  # (B, C, F, h, w)
        arguments = {
            "prompt": _prompts("prompt", prompt, clean.shape[0]),
            "negative_prompt": negative_prompt,
            "num_inference_steps": num_inference_steps,
            "guidance_scale": guidance_scale,
        }
        self._check(clean, arguments)
        preflight_clips(self, clean, {"guidance_scale": guidance_scale, "output_type": "latent"})
        call = self._call(clean, **arguments)
        inversion = self._invert(clean, call, steps_run(num_inference_steps, strength))
        self.maybe_free_model_hooks()
        return inversion

    @torch.no_grad()
    def edit(
        self,
        video,
        prompt: str | list[str],
        source_prompt: str | list[str] = "",
        method: str = "inversion",
        num_inference_steps: int = 50,
        guidance_scale: float = 2.0,
        attention_injection: float = 0.6,
        strength: float | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        decode_chunk_size: int | None = None,
    ):
        """Edits ``video`` (clips at a size this stage works at, as :meth:`invert` takes them) from
        ``source_prompt`` (what the clips show) to ``prompt``, each a text for every clip or one per clip, by
        ``method`` (see the module docstring).

        Args:
            num_inference_steps: inversion and regeneration steps (``"sdedit"``: of the whole schedule, of which
                the last ``strength`` run).
            guidance_scale: classifier-free guidance of the regeneration; above 1 the source prompt is the
                negative prompt (``"inversion"``, ``"plain_inversion"``).
            attention_injection: ``"inversion"``: the fraction of the steps, from the noisiest, during which the
                target branch attends with the source branch's self-attention (0: never, 1: always).
            strength: in (0, 1], how far up the schedule the edit starts: ``"sdedit"`` noises the video that far
                (default 0.6); the inversion methods invert the first ``strength`` of the steps and regenerate
                from there (default 0.8 for ``"inversion"``: the noisiest steps decide where the object is, so
                leaving them out keeps the layout; 1 for ``"plain_inversion"``).
            generator: ``"sdedit"``: the noise added to the video.
            output_type, return_dict, decode_chunk_size: as in the stage's ``__call__``.

        Returns the stage's :class:`~cascade.pipelines.stage_base.VideoPipelineOutput` of the edited clips.
        """
        check_choice("method", method, EDIT_METHODS)
        check_int("num_inference_steps", num_inference_steps, minimum=1)
        check_number("attention_injection", attention_injection, minimum=0.0, maximum=1.0)
        if strength is None:
            strength = DEFAULT_STRENGTH[method]
        check_number("strength", strength, greater_than=0.0, maximum=1.0)
        clean = self._clean_sample(video, decode_chunk_size)  # (B, C, F, h, w)
        count = clean.shape[0]
        targets, sources = _prompts("prompt", prompt, count), _prompts("source_prompt", source_prompt, count)
        negative = sources if guidance_scale > 1 and method != "sdedit" else None  # negative-prompt inversion
        target = {
            "prompt": targets,
            "negative_prompt": negative,
            "num_inference_steps": num_inference_steps,
            "guidance_scale": guidance_scale,
            "generator": generator,
            "output_type": output_type,
            "return_dict": return_dict,
            "decode_chunk_size": decode_chunk_size,
        }
        self._check(clean, target)  # every argument, before the inversion runs the model
        preflight_clips(self, clean, target, branches=2 if method == "inversion" else 1)
        if method == "sdedit":
            return self._sdedit(self._call(clean, **target), clean, strength)
        inverted_steps = steps_run(num_inference_steps, strength)
        begin = num_inference_steps - inverted_steps
        forward, _ = self._inversion_schedulers()
        # one bar for the edit: the inversion's steps, then as many regenerating (DDIM both ways: one call each)
        with self.progress_bar(total=2 * inverted_steps) as progress_bar:
            inversion = self._invert(
                clean,
                self._call(
                    clean, prompt=sources, num_inference_steps=num_inference_steps, guidance_scale=1.0
                ),
                inverted_steps,
                progress_bar,
            )
            with _using_scheduler(self, forward):
                if method == "plain_inversion":
                    call = self._call(clean, **target)
                    latents = self.denoise(
                        call, inversion.latents, begin_step=begin, progress_bar=progress_bar
                    )
                    return self.finish(call, latents)
                both = {
                    "prompt": sources + targets,
                    "negative_prompt": None if negative is None else negative * 2,
                }
                call = self._call(
                    torch.cat([clean, clean]), **{**target, **both}
                )  # the source branch, then the target
                latents = self._denoise_with_injection(
                    call, clean, inversion, attention_injection, begin, progress_bar
                )  # (2B, C, F, h, w)
        return self.finish(call, latents[count:])

    def _sdedit(self, call: StageCall, clean: torch.Tensor, strength: float):
        """The clean clips noised ``strength`` of the way up the pipeline's own schedule, then denoised."""
        steps = call.num_inference_steps
        begin = steps - steps_run(steps, strength)
        start = self.timesteps_from(call, begin, clean.device)[:1].repeat(clean.shape[0])  # (B,)
        noise = randn_tensor(clean.shape, generator=call.generator, device=clean.device, dtype=clean.dtype)
        latents = self.scheduler.add_noise(clean, noise, start)
        return self.finish(call, self.denoise(call, latents, begin_step=begin))

    def _denoise_with_injection(
        self,
        call: StageCall,
        clean: torch.Tensor,
        inversion: InversionOutput,
        fraction: float,
        begin_step: int,
        progress_bar=None,
    ) -> torch.Tensor:
        """The source and target branches from the inverted noise of ``clean`` ``(B, C, F, h, w)``: after
        every step the source branch is put back on the inversion trajectory and the target branch gets the
        same correction, the target taking the source's self-attention for the first ``fraction`` of the
        steps."""
        count, steps = inversion.latents.shape[0], len(inversion.timesteps)
        injected_steps = round(fraction * steps)
        # After forward step i the sample is at the level inversion step steps - 2 - i reached; then clean.
        levels = [*inversion.trajectory.flip(0)[1:], clean]
        groups = 2 if self.do_classifier_free_guidance else 1
        with self_attention_injection(self.unet, groups) as injection:
            injection.active = injected_steps > 0

            def hold_source(pipe, step, timestep, tensors):
                injection.active = step + 1 < injected_steps
                latents = tensors["latents"]  # (2B, C, F, h, w): the source branch, then the target
                correction = levels[step] - latents[:count]  # what the source branch missed this step
                return {"latents": torch.cat([levels[step], latents[count:] + correction])}

            call.callback_on_step_end, call.callback_on_step_end_tensor_inputs = hold_source, ["latents"]
            return self.denoise(
                call,
                torch.cat([inversion.latents, inversion.latents]),
                begin_step=begin_step,
                progress_bar=progress_bar,
            )
