"""The permutation plan: every fixed input of a null, compiled once into flat arrays.

Grids are padded by the kernel half-width so that a kernel centred on any voxel of the
template never leaves the array (no bounds checks in the inner loop). ``gridmap`` sends a
padded-grid voxel to its index in the analysis mask, or to ``n_mask`` (a dump slot that is
never read) when the voxel lies outside the mask. Kernels are stored as log(1 - k) in
float32: the ALE of a voxel is 1 - exp(sum over experiments of min over foci of log(1 - k)),
so the inner loop has no transcendental functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .gaussian import KERNEL_HALF, ale_kernel, kernel_support

PAD = KERNEL_HALF


@dataclass(frozen=True)
class Grid:
    """The analysis mask on its template grid, with padded-grid lookup tables."""

    shape: tuple[int, int, int]
    mask: np.ndarray  # bool, template shape
    padded_shape: tuple[int, int, int]
    gridmap: np.ndarray  # int32, padded flat -> mask index or n_mask
    mask_padded_flat: np.ndarray  # int64, padded flat index of each mask voxel
    mask_ijk: np.ndarray  # int32 (n_mask, 3), template ijk of each mask voxel
    forward_neighbours: np.ndarray  # int32 (3, n_mask): +i, +j, +k neighbour or -1
    # Row hull: for each (i, j) row holding mask voxels, the k span from its first to its
    # last mask voxel, stored contiguously. Kernels scatter into it one contiguous k run per
    # row (vectorisable, no per-voxel lookup); ``hull_to_mask`` maps back to mask indices.
    row_lookup: np.ndarray  # int32 (padded i, padded j) -> row or -1
    row_zlo: np.ndarray  # int32 (n_rows,)
    row_zhi: np.ndarray  # int32 (n_rows,)
    row_off: np.ndarray  # int64 (n_rows,): hull index of (row, row_zlo)
    hull_to_mask: np.ndarray  # int32 (n_hull,): mask index or -1

    @property
    def n_mask(self) -> int:
        return int(self.mask_ijk.shape[0])

    def padded_flat(self, ijk: np.ndarray) -> np.ndarray:
        ijk = np.asarray(ijk, dtype=np.int64) + PAD
        ps = self.padded_shape
        return (ijk[:, 0] * ps[1] + ijk[:, 1]) * ps[2] + ijk[:, 2]

    def to_volume(self, values: np.ndarray, fill=0) -> np.ndarray:
        out = np.full(self.shape, fill, dtype=np.asarray(values).dtype)
        out[self.mask] = values
        return out


def build_grid(mask: np.ndarray) -> Grid:
    mask = np.asarray(mask, dtype=bool)
    shape = tuple(int(s) for s in mask.shape)
    padded_shape = tuple(s + 2 * PAD for s in shape)
    mask_ijk = np.argwhere(mask).astype(np.int32)  # C order, as np.where / NiMARE's masker
    n_mask = mask_ijk.shape[0]
    gridmap = np.full(int(np.prod(padded_shape)), n_mask, dtype=np.int32)
    ijk64 = mask_ijk.astype(np.int64) + PAD
    flat = (ijk64[:, 0] * padded_shape[1] + ijk64[:, 1]) * padded_shape[2] + ijk64[:, 2]
    gridmap[flat] = np.arange(n_mask, dtype=np.int32)
    index_vol = np.full(shape, -1, dtype=np.int32)
    index_vol[mask] = np.arange(n_mask, dtype=np.int32)
    fwd = np.full((3, n_mask), -1, dtype=np.int32)
    for axis in range(3):
        nb = mask_ijk.copy()
        nb[:, axis] += 1
        ok = nb[:, axis] < shape[axis]
        fwd[axis, ok] = index_vol[nb[ok, 0], nb[ok, 1], nb[ok, 2]]
    rows_i, rows_j = np.nonzero(mask.any(axis=2))
    n_rows = len(rows_i)
    row_lookup = np.full(padded_shape[:2], -1, dtype=np.int32)
    row_lookup[rows_i + PAD, rows_j + PAD] = np.arange(n_rows, dtype=np.int32)
    zlo = np.argmax(mask[rows_i, rows_j, :], axis=1).astype(np.int32)
    zhi = (shape[2] - 1 - np.argmax(mask[rows_i, rows_j, ::-1], axis=1)).astype(np.int32)
    lengths = (zhi - zlo + 1).astype(np.int64)
    row_off = np.r_[0, np.cumsum(lengths)[:-1]].astype(np.int64)
    hull_to_mask = np.full(int(lengths.sum()), -1, dtype=np.int32)
    r_of = row_lookup[mask_ijk[:, 0] + PAD, mask_ijk[:, 1] + PAD]
    hull_to_mask[row_off[r_of] + mask_ijk[:, 2] - zlo[r_of]] = np.arange(n_mask, dtype=np.int32)
    return Grid(
        shape,
        mask,
        padded_shape,
        gridmap,
        flat,
        mask_ijk,
        fwd,
        row_lookup,
        zlo,
        zhi,
        row_off,
        hull_to_mask,
    )


@dataclass(frozen=True)
class KernelTable:
    """Distinct kernels, concatenated: padded-grid flat offsets, values and log(1 - k)."""

    fwhms: np.ndarray  # float64 (n_kernels,)
    start: np.ndarray  # int64 (n_kernels + 1,)
    flat_offsets: np.ndarray  # int64
    values: np.ndarray  # float32 kernel values (NiMARE's dtype)
    log_values: np.ndarray  # float32 log1p(-k)
    width: np.ndarray  # int32 side of the kernel box (voxels)
    cube_start: np.ndarray  # int64 (n_kernels,): start of each dense cube in ``cube_log``
    cube_log: np.ndarray  # float32: dense log1p(-k) cubes, C order (i, j, k)


def build_kernel_table(
    fwhms: np.ndarray, grid: Grid, voxel_volume: float
) -> tuple[KernelTable, np.ndarray]:
    """Kernel table for the distinct FWHMs in ``fwhms``; returns it and each entry's kernel id."""
    distinct, kernel_ids = np.unique(np.asarray(fwhms, dtype=np.float64), return_inverse=True)
    ps = grid.padded_shape
    offs, vals, widths, start = [], [], [], [0]
    cubes, cube_start = [], [0]
    for fwhm in distinct:
        dense = ale_kernel(float(fwhm), float(voxel_volume))
        cubes.append(np.log1p(-dense.astype(np.float32)).astype(np.float32).ravel())
        cube_start.append(cube_start[-1] + dense.size)
        off, val = kernel_support(dense)
        off = off.astype(np.int64)
        offs.append((off[:, 0] * ps[1] + off[:, 1]) * ps[2] + off[:, 2])
        vals.append(val)
        widths.append(dense.shape[0])
        start.append(start[-1] + len(val))
    values = np.concatenate(vals).astype(np.float32)
    table = KernelTable(
        fwhms=distinct,
        start=np.array(start, dtype=np.int64),
        flat_offsets=np.concatenate(offs).astype(np.int64),
        values=values,
        log_values=np.log1p(-values).astype(np.float32),
        width=np.array(widths, dtype=np.int32),
        cube_start=np.array(cube_start[:-1], dtype=np.int64),
        cube_log=np.concatenate(cubes).astype(np.float32),
    )
    return table, kernel_ids.astype(np.int32)


@dataclass(frozen=True)
class Sampler:
    """Where null foci come from: candidate voxels and (optionally) their cumulative weights.

    Uniform over the mask for ALE; the base-rate map for probabilistic C-SALE; the pool of
    reference foci for deterministic C-SALE. An empty ``cdf`` means uniform.
    """

    padded_flat: np.ndarray  # int64 (n_candidates,)
    ijk: np.ndarray  # int32 (n_candidates, 3), template ijk
    cdf: np.ndarray  # float64 (n_candidates,) or (0,)


def uniform_sampler(grid: Grid) -> Sampler:
    return Sampler(grid.mask_padded_flat, grid.mask_ijk, np.zeros(0, dtype=np.float64))


def weighted_sampler(grid: Grid, weights: np.ndarray) -> Sampler:
    """Sampler over mask voxels with probability proportional to ``weights`` (n_mask,)."""
    w = np.asarray(weights, dtype=np.float64)
    keep = w > 0
    cdf = np.cumsum(w[keep])
    cdf /= cdf[-1]
    cdf[-1] = 1.0
    return Sampler(grid.mask_padded_flat[keep], grid.mask_ijk[keep], cdf)


def pool_sampler(grid: Grid, ijk: np.ndarray) -> Sampler:
    """Sampler drawing uniformly from a pool of foci (template ijk, inside the box)."""
    ijk = np.asarray(ijk, dtype=np.int32)
    return Sampler(grid.padded_flat(ijk), ijk, np.zeros(0, dtype=np.float64))


@dataclass(frozen=True)
class NullPlan:
    """Everything one permutation needs: grid, kernels, experiments, sampler, seed."""

    grid: Grid
    kernels: KernelTable
    exp_kernel: np.ndarray  # int32 (n_exp,)
    exp_focus_start: np.ndarray  # int64 (n_exp + 1,): global focus index of each experiment
    sampler: Sampler
    key: np.uint64  # scrambled seed

    @property
    def n_experiments(self) -> int:
        return int(self.exp_kernel.shape[0])

    @property
    def n_foci(self) -> int:
        return int(self.exp_focus_start[-1])
