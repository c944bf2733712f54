"""How many cores this process may use: the pod's CPU limit (cgroup), else the CPUs it is allowed to run on."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_V2_MAX = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def quota_cores(quota: str, period: str) -> int | None:
    """Cores a CFS quota allows, rounded up (a 1500m limit runs 2 threads); None for no limit ("max" or -1)."""
    quota, period = quota.strip(), period.strip()
    if quota in ("max", "-1", "") or not period:
        return None
    q, p = int(quota), int(period)
    return max(1, math.ceil(q / p)) if q > 0 and p > 0 else None


def cgroup_cores(
    v2: Path = CGROUP_V2_MAX, v1_quota: Path = CGROUP_V1_QUOTA, v1_period: Path = CGROUP_V1_PERIOD
) -> int | None:
    try:
        quota, period = (v2.read_text().split() + [""])[:2]
        return quota_cores(quota, period)
    except (OSError, ValueError):
        pass
    try:
        return quota_cores(v1_quota.read_text(), v1_period.read_text())
    except (OSError, ValueError):
        return None


def usable_cores() -> int:
    """The CPU limit of the container when it has one, else the CPUs this process may be scheduled on."""
    allowed = affinity_cores()
    limit = cgroup_cores()
    return min(allowed, limit) if limit else allowed


def vllm_thread_env(threads: int | None, allowed: int, environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    """Env that sizes vLLM's CPU worker to the container: what to set (nothing the user set is overridden).

    vLLM's CPU backend (VLLM_CPU_OMP_THREADS_BIND=auto) binds one OpenMP thread to every physical core this process
    may run on (its affinity), minus a reserved one. In a pod with a CPU limit on a larger node the affinity is the
    whole node, while the CFS quota allows only the limit: dozens of threads would share a few cores' worth of time
    and be throttled. So when the limit (or CPU_THREADS) is below the affinity, binding is off and OMP_NUM_THREADS is
    the limit; otherwise vLLM's own binding stays (it is right when the pod owns its cores, e.g. the static CPU
    manager or a machine of its own).
    """
    if "VLLM_CPU_OMP_THREADS_BIND" in environ or "OMP_NUM_THREADS" in environ:
        return {}
    if threads is None or threads >= allowed:
        return {}
    return {"VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": str(threads)}


def affinity_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
