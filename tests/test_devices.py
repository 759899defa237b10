"""Which dtypes a device computes natively (cascade.utils.devices), the warning for an emulated one, and
bfloat16 correctness on shapes small enough to be quick where the CPU emulates it."""

import platform
import warnings

import pytest
import torch

from cascade import KeyframesPipeline
from cascade.testing.tiny_models import tiny_keyframes_components
from cascade.utils import devices

X86 = platform.machine().lower() in ("x86_64", "amd64")


@pytest.fixture
def fresh_warnings(monkeypatch):
    """Each test starts with no warning given yet (they are given once per process)."""
    monkeypatch.setattr(devices, "_warned", set())


@pytest.mark.skipif(not X86 or not devices.cpu_flags(), reason="reads the x86 flags of /proc/cpuinfo")
def test_cpu_bfloat16_is_native_exactly_with_the_avx512_bf16_or_amx_flags():
    flags = devices.cpu_flags()
    assert devices.cpu_bfloat16_is_native() == bool({"avx512_bf16", "amx_bf16"} & flags)
    expected = torch.bfloat16 if {"avx512_bf16", "amx_bf16"} & flags else torch.float32
    assert devices.auto_dtype("cpu") == expected


def test_auto_dtype_is_native_and_float32_always_is():
    assert devices.auto_dtype("cpu") in devices.native_dtypes("cpu")
    assert devices.native_dtypes("cpu")[-1] == torch.float32
    assert devices.is_native(torch.float32, "cpu")


@pytest.mark.parametrize("native", [True, False])
def test_auto_dtype_follows_the_cpu(native, monkeypatch):
    monkeypatch.setattr(devices, "cpu_bfloat16_is_native", lambda: native)
    monkeypatch.setattr(devices, "cpu_float16_is_native", lambda: False)
    assert devices.auto_dtype("cpu") == (torch.bfloat16 if native else torch.float32)
    assert devices.resolve_dtype("auto", "cpu") == devices.auto_dtype("cpu")


def test_resolve_dtype_takes_names_and_dtypes_and_refuses_others():
    assert devices.resolve_dtype("bfloat16") == torch.bfloat16
    assert devices.resolve_dtype(torch.float16) == torch.float16
    for bad in ("half", torch.int8, None):
        with pytest.raises(
            ValueError, match=r"`dtype` must be one of \['auto', 'float32', 'bfloat16', 'float16'\]"
        ):
            devices.resolve_dtype(bad)
    with pytest.raises(ValueError, match="`device` must be a torch device or its name"):
        devices.native_dtypes("no-such-device")


def test_an_emulated_dtype_warns_once_naming_the_slowdown_and_the_faster_choice(monkeypatch, fresh_warnings):
    monkeypatch.setattr(devices, "cpu_bfloat16_is_native", lambda: False)
    monkeypatch.setattr(devices, "cpu_float16_is_native", lambda: False)
    with pytest.warns(
        RuntimeWarning, match=r"no native bfloat16: torch emulates it, .* slower than float32\. Use float32"
    ):
        assert devices.warn_if_emulated(torch.bfloat16, "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert devices.warn_if_emulated(torch.bfloat16, "cpu")  # emulated, but said once already
        assert not devices.warn_if_emulated(torch.float32, "cpu")


def test_a_native_dtype_does_not_warn(monkeypatch, fresh_warnings):
    monkeypatch.setattr(devices, "cpu_bfloat16_is_native", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not devices.warn_if_emulated(torch.bfloat16, "cpu")


def test_matmul_rate_is_positive_and_checks_its_size():
    assert devices.matmul_rate(torch.float32, 32, seconds=0.01) > 0
    with pytest.raises(ValueError, match="`size` must be a positive int, got 0"):
        devices.matmul_rate(torch.float32, 0)


def test_describe_machine_names_the_cpu_capability_and_both_matmul_rates():
    text = devices.describe_machine()
    assert devices.cpu_model() in text
    assert f"CPU capability {torch.backends.cpu.get_cpu_capability()}" in text
    assert "float32" in text and "GFLOP/s" in text and "bfloat16 / float32 = " in text


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value.float() - reference).norm() / reference.norm())


def test_keyframes_in_bfloat16_match_float32_and_warn_where_emulated(monkeypatch, fresh_warnings):
    """bfloat16 on 8x8 frames (quick even where emulated): one UNet step within 3% of float32 (bfloat16 keeps
    8 bits of mantissa, about 0.4% per operation), two sampling steps within 10%."""
    monkeypatch.setattr(devices, "cpu_bfloat16_is_native", lambda: False)
    pipe = KeyframesPipeline(**tiny_keyframes_components())
    pipe.set_progress_bar_config(disable=True)
    sample, text = torch.randn(1, 3, 2, 8, 8), torch.randn(1, 16, 32)  # (B, C, F, H, W), (B, L, D)

    def outputs(dtype):
        step = pipe.unet(sample.to(dtype), 500, text.to(dtype)).sample
        generator = torch.Generator().manual_seed(0)
        latents = pipe(
            "a red circle", num_frames=2, num_inference_steps=2, generator=generator, output_type="latent"
        )
        return step, latents.frames

    step, latents = outputs(torch.float32)
    pipe.to(dtype=torch.bfloat16)
    with pytest.warns(RuntimeWarning, match="no native bfloat16"):
        half_step, half_latents = outputs(torch.bfloat16)
    assert half_step.dtype == half_latents.dtype == torch.bfloat16
    assert 0 < relative_error(half_step, step) < 0.03
    assert relative_error(half_latents, latents) < 0.1
