"""What this CPU can do, and the native-code choices that depend on it, as tested rules.

Native model code (llama.cpp, OpenVINO, oneDNN under torch) picks its kernels by the CPU it runs on,
so a build that works on one x86 machine can fault on another. Two things live here so that such
choices are made in one place and can be tested on any machine from a given ``/proc/cpuinfo`` text:

* :class:`CpuInfo` — the model name and the instruction-set features the kernels care about
  (AVX2, AVX-512, VNNI, AMX), parsed from ``/proc/cpuinfo``;
* :func:`choose_extra_buffers` — whether llama.cpp may use its *extra CPU buffer types* (the AMX
  buffer and the weight-repacking buffer). On CPUs that report AMX, llama.cpp 0.3.36's AMX path
  kills the process with a general protection fault in ``libggml-cpu.so`` on the first prompt longer
  than one token (issue #12), so ``auto`` turns them off there; elsewhere it keeps them on, which
  is what llama.cpp does by default (the measured effect is in docs/MODELS.md).

And :func:`physical_cores`, the one thread-count rule of the model layer.

>>> cpu = CpuInfo.parse("model name\\t: Intel(R) Xeon(R)\\nflags\\t\\t: fpu avx2 avx512f avx512_vnni amx_tile amx_int8\\n")
>>> cpu.features()
['AVX2', 'AVX-512', 'VNNI', 'AMX']
>>> choose_extra_buffers("auto", cpu).enabled
False
>>> choose_extra_buffers("auto", CpuInfo.parse("flags : avx2 avx512f avx512_vnni")).enabled
True
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = ["CpuInfo", "ExtraBuffersChoice", "ExtraBuffersSetting", "choose_extra_buffers", "physical_cores"]

ExtraBuffersSetting = Literal["auto", "on", "off"]

CPUINFO = Path("/proc/cpuinfo")

# flag (as /proc/cpuinfo spells it) -> the feature name shown to users
_FEATURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("AVX2", ("avx2",)),
    ("AVX-512", ("avx512f",)),
    ("VNNI", ("avx512_vnni", "avx_vnni")),
    ("AMX", ("amx_tile", "amx_int8", "amx_bf16")),
)


@dataclass(frozen=True)
class CpuInfo:
    """The first CPU's model name, vendor and flags (every core of a machine reports the same)."""

    model_name: str = "unknown"
    vendor: str = "unknown"
    flags: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def parse(cls, text: str) -> CpuInfo:
        """Read a ``/proc/cpuinfo`` text (x86: ``flags``; other architectures: ``Features``).

        >>> CpuInfo.parse("vendor_id : AuthenticAMD\\nflags : avx2 avx512f").vendor
        'AuthenticAMD'
        """
        values: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, value = line.partition(":")
            if not sep:
                continue
            key = key.strip().lower()
            if key not in values:  # the first processor block is enough
                values[key] = value.strip()
        flags = values.get("flags") or values.get("features") or ""
        return cls(
            model_name=values.get("model name") or values.get("cpu model") or "unknown",
            vendor=values.get("vendor_id") or "unknown",
            flags=frozenset(flags.lower().split()),
        )

    @classmethod
    def current(cls, path: Path = CPUINFO) -> CpuInfo:
        """This machine's CPU; without ``/proc/cpuinfo`` (not Linux) the flags are unknown (empty)."""
        try:
            return cls.parse(path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            return cls(model_name=platform.processor() or platform.machine() or "unknown")

    def has(self, feature: str) -> bool:
        """Whether ``feature`` (one of ``AVX2``, ``AVX-512``, ``VNNI``, ``AMX``) is reported."""
        for name, flags in _FEATURES:
            if name == feature:
                return any(f in self.flags for f in flags)
        raise ValueError(f"unknown CPU feature {feature!r}; known: {', '.join(n for n, _ in _FEATURES)}")

    @property
    def amx(self) -> bool:
        """Intel Advanced Matrix Extensions (Sapphire Rapids and later Xeons)."""
        return self.has("AMX")

    def features(self) -> list[str]:
        """The features the native kernels care about that this CPU reports, in a fixed order."""
        return [name for name, flags in _FEATURES if any(f in self.flags for f in flags)]

    def amx_flags(self) -> list[str]:
        """The AMX flags as reported (for messages)."""
        return sorted(f for f in self.flags if f.startswith("amx"))

    def to_json(self) -> dict[str, object]:
        return {"model": self.model_name, "vendor": self.vendor, "features": self.features()}


@dataclass(frozen=True)
class ExtraBuffersChoice:
    """Whether llama.cpp uses its extra CPU buffer types, and the sentence that says why."""

    setting: ExtraBuffersSetting
    enabled: bool
    reason: str


def choose_extra_buffers(setting: ExtraBuffersSetting, cpu: CpuInfo) -> ExtraBuffersChoice:
    """The rule behind ``llm.extra_buffers``: ``on``/``off`` as told; ``auto`` is off on AMX CPUs.

    >>> choose_extra_buffers("on", CpuInfo.parse("flags : amx_tile")).reason[:22]
    'llm.extra_buffers = on'
    """
    if setting == "on":
        return ExtraBuffersChoice(
            setting, True, "llm.extra_buffers = on: AMX and weight-repacking buffers as set"
        )
    if setting == "off":
        return ExtraBuffersChoice(setting, False, "llm.extra_buffers = off: plain CPU buffers as set")
    if cpu.amx:
        return ExtraBuffersChoice(
            setting,
            False,
            f"llm.extra_buffers = auto: this CPU reports AMX ({' '.join(cpu.amx_flags())}), where llama.cpp's "
            "AMX buffer crashes the process on prompts longer than one token, so extra buffers are off",
        )
    return ExtraBuffersChoice(
        setting,
        True,
        "llm.extra_buffers = auto: no AMX reported, so llama.cpp keeps its default extra buffers "
        "(weight repacking; faster prompt processing, docs/MODELS.md)",
    )


def physical_cores() -> int:
    """Physical cores this process may run on: psutil's physical count, capped by the CPU affinity.

    Threads beyond this only add contention (measured for both torch and llama.cpp).
    """
    try:
        import psutil

        cores = psutil.cpu_count(logical=False)
    except ImportError:  # pragma: no cover - psutil is a requirement
        cores = None
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores or available, available))
