"""Checks that make a run's p-values valid by construction, before any work starts.

With n permutations no Monte Carlo p below 1/n exists, so a threshold below it can never be
crossed (C-SALE then finds nothing, whatever the data) or, worse, a null that can never
exceed it reports every observed cluster as significant. These checks refuse such settings
up front (exit 64) and name the smallest valid count; the upper bound refuses a count whose
memory cannot fit, with the estimate.
"""

from __future__ import annotations

import os

from .settings import Settings, option_name

#: top-K permutation ids are int32 (kernels/cpu/csale.py), so a run has at most this many.
MAX_ITERS = 2**31 - 1


def min_iters_ale(cluster_alpha: float) -> int:
    """Smallest n whose Monte Carlo FWE p (>= 1/n, nimare.stats.null_to_p) can be < alpha.

    ALE's cluster-forming p comes from the approximate null and is not bound by n."""
    n = max(1, int(1.0 / cluster_alpha) - 1)
    while not 1.0 / n < cluster_alpha:
        n += 1
    return n


def min_iters_csale(voxel_thresh: float, cluster_alpha: float) -> int:
    """Smallest n for C-SALE: observed p = max(count, 1)/n < voxel_thresh must be reachable,
    so must each permutation's p against the other n - 1 (1/(n - 1) < voxel_thresh, the
    cluster-level null), and the cluster-FWE p (>= 1/n) must reach below alpha."""
    n = max(2, int(1.0 / voxel_thresh) - 1)
    while not (1.0 / n < voxel_thresh and 1.0 < voxel_thresh * (n - 1) and 1.0 / n < cluster_alpha):
        n += 1
    return n


def _given(name: str, value, style: str) -> str:
    """An option with its value as the user wrote it: ``--n-iters 500`` or ``n_iters=500``."""
    shown = option_name(name, style)
    return f"{shown}{value}" if style == "api" else f"{shown} {value}"


def min_iters(s: Settings, style: str = "cli") -> tuple[int, str]:
    """(smallest valid n_iters, why) for the analyses of ``s``; option names in ``style``
    (:func:`csale_app.settings.option_name`)."""
    need, why = 1, ""
    if {"ale", "macm"} & set(s.analyses):
        n = min_iters_ale(s.cluster_alpha)
        if n > need:
            alpha = _given("cluster_alpha", f"{s.cluster_alpha:g}", style)
            need, why = (
                n,
                (f"a cluster-FWE p below {alpha} needs more than {n - 1} permutations (p >= 1/n)"),
            )
    if {"csale", "macm"} & set(s.analyses):
        n = min_iters_csale(s.voxel_thresh, s.cluster_alpha)
        if n > need:
            need, why = (
                n,
                (
                    f"C-SALE p-values are #(null >= observed)/n >= 1/n, and each "
                    f"permutation's p is taken against the other n - 1, so "
                    f"{_given('voxel_thresh', f'{s.voxel_thresh:g}', style)} needs at "
                    f"least {n} permutations"
                ),
            )
    return need, why


def usage_problems(s: Settings, style: str = "cli") -> str | None:
    """The first cross-option problem of ``s`` as one line, or None. ``style`` names the
    options as the caller wrote them: ``"cli"`` flags or ``"api"`` keywords."""

    def opt(name: str) -> str:
        return option_name(name, style)

    if s.roi is not None and s.roi_coords:
        return f"{opt('roi')} and {opt('roi_coords')} are mutually exclusive"
    if s.dask_scheduler and s.dask_scheduler_file:
        return f"{opt('dask_scheduler')} and {opt('dask_scheduler_file')} are mutually exclusive"
    if s.default_sample_size is not None and s.kernel_fwhm is not None:
        return (
            f"{opt('default_sample_size')} and {opt('kernel_fwhm')} are mutually "
            "exclusive (a fixed kernel uses no sample size)"
        )
    if s.default_sample_size is not None and s.default_sample_size < 1:
        return (
            f"{_given('default_sample_size', f'{s.default_sample_size:g}', style)}: a "
            "sample size counts subjects and must be >= 1"
        )
    if s.n_iters > MAX_ITERS:
        return (
            f"{_given('n_iters', s.n_iters, style)} exceeds the largest supported count {MAX_ITERS}"
        )
    need, why = min_iters(s, style)
    if s.n_iters < need:
        return (
            f"{_given('n_iters', s.n_iters, style)} is too small: {why}; use "
            f"{_given('n_iters', need, style)} or more"
        )
    return None


def memory_estimate_bytes(s: Settings, n_voxels: int, n_threads: int) -> int:
    """Peak bytes the permutation stage needs for ``n_voxels`` analysis-mask voxels.

    ALE keeps 3 numbers per permutation; C-SALE keeps per voxel the K smallest null values
    and their permutation ids (float32 + int32) per thread, the merged lists and a merge
    buffer, plus each permutation's supra-threshold voxel list (<= K per voxel)."""
    from .stats.csale import top_k_size

    n = s.n_iters
    total = 24 * n + 64 * n_voxels
    if {"csale", "macm"} & set(s.analyses):
        k = top_k_size(s.voxel_thresh, n)
        total += 8 * k * n_voxels * (max(1, n_threads) + 3) + 4 * k * n_voxels + 16 * n
    return int(total)


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (None where unknown)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def memory_problem(s: Settings, n_voxels: int, style: str = "cli") -> str | None:
    """A one-line refusal when the permutation stage cannot fit in memory, else None
    (option names in ``style``, as :func:`usage_problems`)."""
    threads = s.nprocs or os.cpu_count() or 1
    need = memory_estimate_bytes(s, n_voxels, threads)
    limits = [
        x for x in (available_memory_bytes(), int(s.mem_gb * 2**30) if s.mem_gb else None) if x
    ]
    if not limits or need <= min(limits):
        return None
    return (
        f"{_given('n_iters', s.n_iters, style)} needs about {need / 2**30:.1f} GiB "
        f"for {n_voxels} analysis-mask voxels with {threads} thread(s), more than the "
        f"{min(limits) / 2**30:.1f} GiB available; lower "
        f"{option_name('n_iters', style)} or {option_name('nprocs', style)}, or use a "
        "smaller ROI"
    )
