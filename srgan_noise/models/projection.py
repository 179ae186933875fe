"""The affine projection of Sønderby et al. (2016, "Amortised MAP Inference for
Image Super-resolution"): x' = x + A^+(y - A x) maps any generator output x to
the nearest image (in L2) whose downscaling A x' is exactly the LR input y.

A is the data pipeline's own downscaler (`data.downscale` without its clamp:
antialiased bicubic, the filter PIL uses, which `srgan eval` uses too). It is
linear and separable, so it is one matrix per axis, A = A_h (x) A_w, and
A^+ = A_h^+ (x) A_w^+ with A^+ = A^T (A A^T)^{-1} (A has full row rank).

Two implementations of the same map:
- `affine_projection`: dense per-axis matrices in torch, differentiable, on any
  device; what the generator's forward uses (training patches, validation).
- `project_in_place`: sparse matrices and banded solves in scipy on the CPU, in
  row strips, for the assembled output of tiled inference: memory beyond the
  output is a strip plus LR-sized arrays, whatever the image size.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:  # scipy is imported where it is used: `srgan upscale` without a projection never needs it
    import scipy.sparse

BLOCK = 512  # identity columns downscaled at a time while reading off A (bounds memory for long axes)
STRIP = 256  # output rows corrected at a time by project_in_place


@functools.lru_cache(maxsize=32)
def downscale_matrix(length: int, scale: int) -> scipy.sparse.csr_matrix:
    """A (length/scale, length), float64, with A @ column == the pipeline's
    downscaling of that column: read off F.interpolate itself by downscaling
    slabs of the identity (exact by construction, no filter re-implemented)."""
    import scipy.sparse

    if length % scale:
        raise ValueError(f"length {length} is not a multiple of the scale {scale}")
    columns = []
    for start in range(0, length, BLOCK):
        stop = min(start + BLOCK, length)
        # At least 2 columns: torch 2.14's antialiased path is wrong on 1-pixel-wide images.
        slab = torch.zeros(1, 1, length, max(stop - start, 2), dtype=torch.float64)
        slab[0, 0, torch.arange(start, stop), torch.arange(stop - start)] = 1.0
        # Along the other axis the factor is 1: antialiased bicubic at scale 1 is the identity.
        down = F.interpolate(slab, scale_factor=(1 / scale, 1), mode="bicubic", antialias=True, align_corners=False)
        columns.append(scipy.sparse.csc_matrix(down[0, 0, :, :stop - start].numpy()))
    return scipy.sparse.hstack(columns).tocsr()


@functools.lru_cache(maxsize=32)
def _gram_factor(length: int, scale: int) -> np.ndarray:
    """Banded Cholesky factor of A A^T (symmetric, positive definite, bandwidth 3
    at every scale, condition number about 2): solves in linear time."""
    import scipy.linalg

    gram = (downscale_matrix(length, scale) @ downscale_matrix(length, scale).T).tocoo()
    bandwidth = int(np.abs(gram.row - gram.col).max())
    banded = np.zeros((bandwidth + 1, gram.shape[0]))  # upper form: row bandwidth - k holds diagonal k
    for k in range(bandwidth + 1):
        banded[bandwidth - k, k:] = gram.diagonal(k)
    return scipy.linalg.cholesky_banded(banded)


def _solve_gram(factor: np.ndarray, right: np.ndarray) -> np.ndarray:
    import scipy.linalg

    return scipy.linalg.cho_solve_banded((factor, False), right)


@functools.lru_cache(maxsize=32)
def _dense_operators(length: int, scale: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """A (m, n) and A^+ (n, m) for one axis as dense tensors, A^+ computed in float64."""
    a = torch.from_numpy(downscale_matrix(length, scale).toarray())
    pinv = torch.linalg.solve(a @ a.T, a).T  # A^T (A A^T)^{-1}, as A A^T is symmetric
    return a.to(device, dtype), pinv.to(device, dtype)


def affine_projection(x: torch.Tensor, y: torch.Tensor, scale: int) -> torch.Tensor:
    """x (B, C, H, W) -> x + A^+(y - A x) for LR y (B, C, H/scale, W/scale): A of
    the result equals y. Linear in (x, y); differentiable; any device."""
    if x.shape[:2] != y.shape[:2] or x.shape[-2:] != (y.shape[-2] * scale, y.shape[-1] * scale):
        raise ValueError(f"x {tuple(x.shape)} is not y {tuple(y.shape)} upscaled x{scale}")
    height, width = x.shape[-2:]
    dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype  # the solve needs precision
    a_h, pinv_h = _dense_operators(height, scale, x.device, dtype)
    a_w, pinv_w = _dense_operators(width, scale, x.device, dtype)
    x = x.to(dtype)
    residual = y.to(dtype) - a_h @ x @ a_w.T
    return x + pinv_h @ residual @ pinv_w.T


def project_in_place(output: torch.Tensor, lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The same projection on a CPU float32 (C, H, W) output, in place, for LR
    (C, H/scale, W/scale): for the assembled output of tiled inference."""
    channels, height, width = output.shape
    a_h, a_w = downscale_matrix(height, scale), downscale_matrix(width, scale)
    a_h_columns = a_h.tocsc()  # column slices: the LR rows a strip of output rows reaches
    a_h_rows = a_h.T.tocsr()  # row slices of A_h^T: the output rows of a strip
    gram_h, gram_w = _gram_factor(height, scale), _gram_factor(width, scale)
    for channel in range(channels):
        plane = output[channel].numpy()  # shares memory with `output`
        # residual = y - A_h x A_w^T, accumulated over strips of x's rows
        down_rows = np.zeros((a_h.shape[0], width))
        for start in range(0, height, STRIP):
            down_rows += a_h_columns[:, start:start + STRIP] @ plane[start:start + STRIP].astype(np.float64)
        residual = lr[channel].double().numpy() - down_rows @ a_w.T
        # correction = A_h^T (A_h A_h^T)^{-1} residual (A_w A_w^T)^{-1} A_w
        solved = _solve_gram(gram_w, _solve_gram(gram_h, residual).T).T
        right = np.ascontiguousarray(solved @ a_w)  # (h, W), C order: each strip's product reads it whole
        for start in range(0, height, STRIP):
            plane[start:start + STRIP] += (a_h_rows[start:start + STRIP] @ right).astype(np.float32)
    return output
