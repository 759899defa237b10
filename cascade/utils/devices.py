"""Which floating-point dtypes a device computes natively, and what the machine is.

A dtype is *native* on a device when its matrix multiplications run in hardware at least as fast as
float32. On CUDA, float16 always is, and bfloat16 from Ampere on (``torch.cuda.is_bf16_supported()``).
On a CPU, bfloat16 is native only with the AVX512-BF16 or AMX-BF16 instructions (Intel Cooper Lake,
Sapphire Rapids and later; AMD Zen 4 and later) or Arm's BF16 extension; elsewhere torch emulates it, and
on an AVX2-only CPU a bfloat16 matmul runs about 100x slower than a float32 one. float16 on a CPU is
native with AVX512-FP16 or AMX-FP16.

The CPU answer comes from the instruction-set flags, not from torch's CPU capability string (``AVX512``
says nothing about the BF16 extension: Skylake-X and Ice Lake have AVX-512 and emulate bfloat16) and not
from a timed matmul (which costs time on every start and varies with the machine's load). The flags are
torch's own checks where it has them (``torch.cpu._is_avx512_bf16_supported``,
``torch.cpu._is_amx_tile_supported``, ``torch.cpu._is_amx_fp16_supported``, the flags oneDNN's kernels
need), else the kernel's list in ``/proc/cpuinfo``.
"""

import functools
import platform
import time
import warnings
from pathlib import Path

import torch

from .checks import check_int

DTYPE_NAMES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_CHOICES = ("auto", *DTYPE_NAMES)  # what ``--dtype`` takes
EMULATION_SLOWDOWN = {"AVX2": "about 100x", "AVX512": "several times"}  # bfloat16 against float32, measured


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's instruction-set flags as the kernel lists them (``flags`` on x86, ``Features`` on Arm);
    empty where ``/proc/cpuinfo`` does not exist."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def _torch_cpu_check(name: str) -> bool | None:
    """One of torch's CPU feature checks (``torch.cpu._is_*_supported``), or ``None`` where this torch has none."""
    check = getattr(torch.cpu, name, None)
    return bool(check()) if callable(check) else None


@functools.cache
def cpu_bfloat16_is_native() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (AVX512-BF16, AMX-BF16 or Arm BF16)."""
    if platform.machine().lower() in ("aarch64", "arm64"):
        return "bf16" in cpu_flags()
    checks = [_torch_cpu_check("_is_avx512_bf16_supported"), _torch_cpu_check("_is_amx_tile_supported")]
    if any(check is not None for check in checks):
        return any(checks)
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


@functools.cache
def cpu_float16_is_native() -> bool:
    """Whether this CPU multiplies float16 matrices in hardware (AVX512-FP16, AMX-FP16 or Arm FP16)."""
    if platform.machine().lower() in ("aarch64", "arm64"):
        return "asimdhp" in cpu_flags()
    return bool(_torch_cpu_check("_is_amx_fp16_supported")) or "avx512_fp16" in cpu_flags()


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"``."""
    return str(dtype).removeprefix("torch.")


def _device(device: str | torch.device) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(
            f"`device` must be a torch device or its name ('cpu', 'cuda', ...), got {device!r}."
        ) from error


def native_dtypes(device: str | torch.device = "cpu") -> tuple[torch.dtype, ...]:
    """The floating-point dtypes ``device`` computes natively, fastest first; float32 is always one."""
    device = _device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"`device` {str(device)!r}: CUDA is not available on this machine.")
        half = (torch.bfloat16,) if torch.cuda.is_bf16_supported() else ()
        return (*half, torch.float16, torch.float32)
    if device.type == "cpu":
        half = (torch.bfloat16,) if cpu_bfloat16_is_native() else ()
        half += (torch.float16,) if cpu_float16_is_native() else ()
        return (*half, torch.float32)
    return (torch.float32,)  # other backends (mps, xpu): only float32 is taken for granted


def is_native(dtype: torch.dtype, device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` computes ``dtype`` natively (see :func:`native_dtypes`)."""
    return dtype in native_dtypes(device)


def auto_dtype(device: str | torch.device = "cpu") -> torch.dtype:
    """The dtype ``--dtype auto`` picks: on CUDA bfloat16 where supported, else float16; on a CPU bfloat16
    where it is native, else float32. Never an emulated dtype."""
    return native_dtypes(device)[0]


def resolve_dtype(name: str | torch.dtype, device: str | torch.device = "cpu") -> torch.dtype:
    """A dtype from its name in :data:`DTYPE_CHOICES` (``"auto"``: :func:`auto_dtype` of ``device``), or a
    floating-point ``torch.dtype`` as it is."""
    if isinstance(name, torch.dtype) and name in DTYPE_NAMES.values():
        return name
    if name == "auto":
        return auto_dtype(device)
    if name not in DTYPE_NAMES:
        raise ValueError(
            f"`dtype` must be one of {list(DTYPE_CHOICES)} or one of those torch dtypes, got {name!r}."
        )
    return DTYPE_NAMES[name]


_warned: set[tuple[torch.dtype, str]] = set()


def warn_if_emulated(dtype: torch.dtype, device: str | torch.device = "cpu") -> bool:
    """Warns, once per process for each dtype and device type, when ``device`` emulates ``dtype``, naming
    the slowdown and the faster choice. Returns whether ``dtype`` is emulated there."""
    device = _device(device)
    if device.type not in ("cpu", "cuda") or dtype == torch.float32 or is_native(dtype, device):
        return False
    if (dtype, device.type) not in _warned:
        _warned.add((dtype, device.type))
        if device.type == "cpu":
            capability = torch.backends.cpu.get_cpu_capability()
            slowdown = EMULATION_SLOWDOWN.get(capability, "many times")
            where = f"this CPU ({cpu_model()}, torch CPU capability {capability}) has no native {dtype_name(dtype)}"
        else:
            gpu = torch.cuda.get_device_name(device)
            slowdown, where = "several times", f"this GPU ({gpu}) has no native {dtype_name(dtype)}"
        faster = dtype_name(auto_dtype(device))
        warnings.warn(
            f"{where}: torch emulates it, {slowdown} slower than float32. Use {faster} "
            f"(`dtype=torch.{faster}`, or `--dtype auto` on the command line) for speed.",
            RuntimeWarning,
            stacklevel=2,
        )
    return True


@functools.cache
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``'s ``model name``, else what ``platform`` says)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def matmul_rate(dtype: torch.dtype, size: int, seconds: float = 0.5) -> float:
    """GFLOP/s of ``size`` x ``size`` matrix products in ``dtype`` on the CPU: the median over as many
    products as fit in ``seconds`` (at least three, after one warm-up)."""
    check_int("size", size, minimum=1)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # warm-up: kernel selection and packing buffers
    times, start = [], time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < seconds:
        begin = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - begin)
    times.sort()
    return 2 * size**3 / times[len(times) // 2] / 1e9


def describe_machine() -> str:
    """What a benchmark's figures were measured on, as lines of text: the CPU model and core count, torch's
    version and CPU capability, the native dtypes, and the float32 and bfloat16 matmul rates measured now
    (bfloat16 at a size that stays short where it is emulated)."""
    threads = torch.get_num_threads()
    fp32 = matmul_rate(torch.float32, 1024)
    bf16_size = 1024 if cpu_bfloat16_is_native() else 256
    bf16 = matmul_rate(torch.bfloat16, bf16_size)
    native = ", ".join(map(dtype_name, native_dtypes("cpu")))
    lines = [
        f"machine: {cpu_model()}, {threads} torch threads; torch {torch.__version__}, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}; native on the CPU: {native}",
        f"matmul: float32 {fp32:.1f} GFLOP/s (1024), bfloat16 {bf16:.1f} GFLOP/s ({bf16_size}); "
        f"bfloat16 / float32 = {bf16 / fp32:.3g}",
    ]
    if torch.cuda.is_available():
        native_gpu = ", ".join(map(dtype_name, native_dtypes("cuda")))
        lines.append(f"GPU: {torch.cuda.get_device_name()}; native: {native_gpu}")
    return "\n".join(lines)
