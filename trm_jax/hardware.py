"""What the machine offers for bfloat16 matmuls: its CPU's bf16 units and the JAX platform.

Import-light: reading the CPU flags needs only the standard library; :func:`platform` imports
JAX when first called.

* ``"amx_bf16"``    Intel AMX tiles with bf16 (Sapphire Rapids and later Xeons);
* ``"avx512_bf16"`` AVX512-BF16 dot-product instructions (Cooper Lake Xeons, AMD Zen 4/5);
* ``"none"``        neither (or not a Linux machine, where the flags are not read).

Which of these XLA:CPU actually turns into faster training is a measurement, not a flag:
``scripts/dot_forms.py`` times each matmul form, ``docs/performance.md`` records what it showed.
"""

from __future__ import annotations

import functools
import re

BF16_UNITS = ("amx_bf16", "avx512_bf16", "none")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            found = re.search(r"^flags\s*:(.*)$", f.read(), re.M)
    except OSError:
        return frozenset()
    return frozenset(found.group(1).split()) if found else frozenset()


@functools.cache
def cpu_model() -> str:
    """The CPU's model name (``platform.processor()`` where /proc/cpuinfo is missing)."""
    try:
        with open("/proc/cpuinfo") as f:
            found = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
        if found:
            return found.group(1).strip()
    except OSError:
        pass
    import platform as _platform

    return _platform.processor() or "unknown CPU"


def bf16_units(flags: frozenset[str] | None = None) -> str:
    """The best bf16 matmul unit of the CPU: ``amx_bf16``, ``avx512_bf16`` or ``none``."""
    flags = cpu_flags() if flags is None else flags
    for unit in BF16_UNITS[:-1]:
        if unit in flags:
            return unit
    return "none"


def platform() -> str:
    """JAX's default backend: ``cpu``, ``gpu`` or ``tpu`` (imports JAX)."""
    import jax

    return jax.default_backend()
