"""The arithmetic the learner's forward passes run in: ``--precision`` resolved for a device.

Forward passes (inference and training) run under ``torch.autocast`` in the
chosen dtype; weights, gradients and optimizer state stay float32, and agents
cast the network's outputs to float32 before any loss, V-trace or n-step
target is computed (mixed precision as in Micikevicius et al. 2018, with
bfloat16, which needs no loss scaling).

``auto`` picks bfloat16 for convolutional networks where the device runs it
natively: CPUs with AMX or AVX-512 BF16 (docs/results.md: the Nature CNN's
training step 1.8x faster on AMX), CUDA devices that support bfloat16 (Ampere
and later); float32 elsewhere, where emulated bfloat16 is slower, and for the
small fully connected networks of vector observations. On CUDA, ``auto``
and ``bf16`` also let what stays float32 use TF32 tensor-core matmuls.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterable, Literal

import torch

PrecisionName = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")

# /proc/cpuinfo flags of native bfloat16 arithmetic on x86 (AMX tiles, AVX-512 BF16).
NATIVE_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class Precision:
    """A resolved precision: the compute dtype of forward passes on one device type, and why."""

    dtype: torch.dtype
    device_type: str
    reason: str

    @property
    def name(self) -> str:
        return "bf16" if self.dtype == torch.bfloat16 else "fp32"

    @property
    def reduced(self) -> bool:
        return self.dtype != torch.float32

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context forward passes run in (a no-op for float32)."""
        if not self.reduced:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` in the memory layout its reduced-precision convolutions run fastest in.

        bfloat16 convolutions (oneDNN on CPU, tensor cores on CUDA) work in NHWC;
        measured here (tools/bench_train_step.py, Nature CNN on Pong, 1 thread):
        channels_last made the bf16 training step 1.07x and inference 1.1x
        faster. Float32 models are left as they are.
        """
        return model.to(memory_format=torch.channels_last) if self.reduced else model

    def describe(self) -> str:
        return f"precision {self.name} ({self.reason})"


FP32 = Precision(torch.float32, "cpu", "float32")


def cpu_flags(path: str = "/proc/cpuinfo") -> set[str] | None:
    """The CPU feature flags the kernel reports, or None where they cannot be read (not Linux)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        return None
    return set()


def _cpu_bf16(flags: Iterable[str] | None) -> tuple[bool, str]:
    if flags is None:
        return False, "this CPU's features cannot be read (no /proc/cpuinfo); float32 is the safe choice"
    native = [flag for flag in NATIVE_BF16_CPU_FLAGS if flag in set(flags)]
    if native:
        return True, f"this CPU has {' and '.join(native)}"
    return False, f"this CPU has neither {' nor '.join(NATIVE_BF16_CPU_FLAGS)}, so bfloat16 would be emulated and slower"


def _cuda_bf16(device: torch.device) -> tuple[bool, str]:
    index = device.index if device.index is not None else torch.cuda.current_device()
    name = torch.cuda.get_device_name(index)
    major, minor = torch.cuda.get_device_capability(index)
    if major >= 8:
        return True, f"{name} (compute capability {major}.{minor}) has bfloat16 tensor cores"
    return False, f"{name} (compute capability {major}.{minor}) has no bfloat16 tensor cores (Ampere, 8.0, and later do)"


def resolve_precision(
    requested: str,
    device: torch.device,
    images: bool = True,
    read_cpu_flags: Callable[[], Iterable[str] | None] = cpu_flags,
) -> Precision:
    """``--precision`` for ``device``: ``fp32``, ``bf16``, or ``auto``.

    ``auto`` is bf16 where the device runs it natively and the network reads
    ``images`` (a convolutional torso); the small fully connected networks of
    vector observations stay fp32, where autocast's casts cost more than the
    arithmetic they save (tools/bench_train_step.py on CartPole, 1 thread: R2D2's
    training step 0.85x, IMPALA's inference 0.49x the speed of fp32).

    Raises ValueError for an unknown name or a device type that cannot autocast.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"--precision={requested} is not one of {', '.join(PRECISIONS)}")
    device_type = device.type
    if device_type not in ("cpu", "cuda"):
        if requested == "bf16":
            raise ValueError(f"--precision=bf16 is supported on cpu and cuda learners, not {device_type}; use --precision=fp32")
        return Precision(torch.float32, device_type, f"{device_type} device")
    if requested == "fp32":
        return Precision(torch.float32, device_type, "--precision=fp32")
    if requested == "bf16":
        return Precision(torch.bfloat16, device_type, "--precision=bf16")
    if not images:
        return Precision(torch.float32, device_type, "auto: a fully connected network on vector observations, "
                                                     "where bfloat16 autocast is slower than float32")
    native, why = _cpu_bf16(read_cpu_flags()) if device_type == "cpu" else _cuda_bf16(device)
    return Precision(torch.bfloat16 if native else torch.float32, device_type, f"auto: {why}")


def learner_precision(
    requested: str,
    device: torch.device,
    observation_shape: tuple[int, ...],
    read_cpu_flags: Callable[[], Iterable[str] | None] = cpu_flags,
) -> Precision:
    """``--precision`` for a learner whose network reads ``observation_shape``, as ``seed_rl.train`` resolves it.

    Observations of three dimensions (``[C, H, W]``) are images, which ``auto`` runs in bfloat16 where the
    device has it natively; see :func:`resolve_precision`.
    """
    return resolve_precision(requested, device, images=len(observation_shape) == 3, read_cpu_flags=read_cpu_flags)


def enable_tf32(precision: Precision) -> bool:
    """Lets float32 matmuls and convolutions on CUDA use TF32 tensor cores unless fp32 was asked for.

    Returns whether TF32 was enabled (never on CPU, never for ``--precision=fp32``).
    """
    if precision.device_type != "cuda" or precision.reason == "--precision=fp32":
        return False
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return True
