"""Augmentation on the device: random shifts, rotations, scalings and elastic deformations
of a training minibatch, inside the compiled step.

Every output pixel ``p`` (row, column) of an augmented image reads the input at

    source(p) = c + R(-angle) (p - c) / scale - shift + alpha * smooth(u)(p)

with ``c`` the image's centre, ``R`` a rotation, ``shift`` an integer offset in pixels,
and ``u`` a field of uniform draws in [-1, 1] per pixel and direction (256 levels:
``uniform_field``) smoothed by a Gaussian of standard deviation ``sigma`` (Simard,
Steinkraus & Platt 2003, "elastic distortions").
The input is read by bilinear interpolation (``jax.scipy.ndimage.map_coordinates``, order
1), with zeros outside the image. A pure shift reads whole pixels: exact, no blur.

Strengths are *static* (``Augment`` is part of ``TrainSpec``; every distinct setting is its
own program group). The draws come from a key folded from the lane's seed, the epoch and
the step, so every lane of a seed sees the same augmented minibatch and the configurations
of a seed still share one wide first-layer product. A strength held as a lane array would
make each lane's minibatch its own, which loses that sharing for every setting, so none is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

#: The fold that derives the augmentation's key from a lane's key (its own stream: the
#: shuffle and dropout draws stay what they were without augmentation).
AUGMENT_FOLD = 0x5A16
#: Gaussian kernels reach this many standard deviations (``scipy.ndimage``'s default).
TRUNCATE = 4.0


@dataclass(frozen=True)
class Augment:
    """Static augmentation strengths; the defaults are off.

    Attributes:
      shift: the largest translation in whole pixels, per direction (drawn uniformly in
        ``-shift … shift`` for rows and columns apart); 0 means none.
      rotate: the largest rotation in degrees, drawn uniformly in ``[-rotate, rotate]``.
      scale: the largest relative change of size: a factor drawn in ``[1 - scale, 1 + scale]``.
      elastic_alpha: the elastic displacement's strength in pixels; 0 means none.
      elastic_sigma: the standard deviation of its Gaussian smoothing, in pixels (> 0).
    """

    shift: int = 0
    rotate: float = 0.0
    scale: float = 0.0
    elastic_alpha: float = 0.0
    elastic_sigma: float = 4.0

    def __post_init__(self):
        if self.shift < 0 or self.rotate < 0 or self.elastic_alpha < 0:
            raise ValueError(f"augmentation strengths must be >= 0: {self}")
        if not 0 <= self.scale < 1:
            raise ValueError(f"augment scale must lie in [0, 1), got {self.scale}")
        if self.elastic_sigma <= 0:
            raise ValueError(f"elastic sigma must be > 0, got {self.elastic_sigma}")

    @property
    def active(self) -> bool:
        """Whether any augmentation is on."""
        return bool(self.shift or self.rotate or self.scale or self.elastic_alpha)


def gaussian_matrix(size: int, sigma: float) -> np.ndarray:
    """``G`` with ``G @ x`` the Gaussian smoothing of a length-``size`` signal ``x`` with
    zeros beyond its ends (``scipy.ndimage.gaussian_filter1d(x, sigma, mode="constant")``)."""
    radius = int(TRUNCATE * sigma + 0.5)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    offsets = np.arange(size)[None, :] - np.arange(size)[:, None]  # column - row
    inside = np.abs(offsets) <= radius
    return np.where(inside, taps[np.clip(offsets + radius, 0, 2 * radius)], 0.0).astype(np.float32)


def resample(images: jax.Array, rows: jax.Array, columns: jax.Array) -> jax.Array:
    """Each image read at its own source coordinates, bilinearly, zeros outside.

    ``images``: ``(batch, height, width)`` floats; ``rows``, ``columns``: the source
    coordinates of every output pixel, ``(batch, height, width)``.
    """

    def one(image, r, c):
        return jax.scipy.ndimage.map_coordinates(image, [r, c], order=1, cval=0.0)

    return jax.vmap(one)(images, rows, columns)


def coordinates(
    batch: int,
    size: int,
    angle: jax.Array | None = None,
    factor: jax.Array | None = None,
    offsets: jax.Array | None = None,
    displacement: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """The source rows and columns ``(batch, size, size)`` of given transforms (the
    module's formula; ``None``: that part is left out).

    ``angle``: radians, ``factor``: scale, both ``(batch,)``; ``offsets``: ``(batch, 2)``
    whole-pixel (row, column) shifts; ``displacement``: ``(2, batch, size, size)`` (rows,
    columns) added to the source coordinates.
    """
    grid = jnp.arange(size, dtype=jnp.float32)
    rows = jnp.broadcast_to(grid[:, None], (batch, size, size))
    columns = jnp.broadcast_to(grid[None, :], (batch, size, size))
    if angle is not None or factor is not None:
        angle = jnp.zeros(batch) if angle is None else angle
        factor = jnp.ones(batch) if factor is None else factor
        centre = (size - 1) / 2.0
        cos = (jnp.cos(angle) / factor)[:, None, None]
        sin = (jnp.sin(angle) / factor)[:, None, None]
        y, x = rows - centre, columns - centre
        rows, columns = centre + cos * y - sin * x, centre + sin * y + cos * x
    if offsets is not None:
        offsets = offsets.astype(jnp.float32)
        rows, columns = rows - offsets[:, 0, None, None], columns - offsets[:, 1, None, None]
    if displacement is not None:
        rows, columns = rows + displacement[0], columns + displacement[1]
    return rows, columns


def source_coordinates(key: jax.Array, batch: int, size: int, augment: Augment):
    """The source rows and columns, ``(batch, size, size)`` each, of one random draw."""
    shift_key, angle_key, scale_key, elastic_key = jax.random.split(key, 4)
    angle = factor = offsets = displacement = None
    if augment.rotate:
        angle = jax.random.uniform(angle_key, (batch,), minval=-1.0, maxval=1.0)
        angle = angle * math.radians(augment.rotate)
    if augment.scale:
        factor = jax.random.uniform(
            scale_key, (batch,), minval=1.0 - augment.scale, maxval=1.0 + augment.scale
        )
    if augment.shift:
        offsets = jax.random.randint(shift_key, (batch, 2), -augment.shift, augment.shift + 1)
    if augment.elastic_alpha:
        field = uniform_field(elastic_key, (batch, 2, size, size))
        displacement = augment.elastic_alpha * smooth(field, augment.elastic_sigma)
    return coordinates(batch, size, angle, factor, offsets, displacement)


#: Bits per uniform draw of the elastic noise field: four draws from one 32-bit word.
NOISE_BITS = 8


def uniform_field(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Uniform noise in (-1, 1), quantised to ``2**NOISE_BITS`` levels, for the elastic field.

    Threefry, JAX's generator, costs about 6 ns per 32-bit word on a CPU core, and a float32
    field of a 200-image minibatch takes 313,600 of them (half the augmentation's time).
    Four 8-bit draws from each word cost a quarter; the Gaussian that smooths the field
    averages about ``4 pi sigma**2`` draws, so 256 levels are as good as a continuum there.
    """
    per_word = 32 // NOISE_BITS
    if shape[-1] % per_word:
        raise ValueError(f"the field's last axis must be a multiple of {per_word}: {shape}")
    words = jax.random.bits(key, (*shape[:-1], shape[-1] // per_word, 1), jnp.uint32)
    shifts = jnp.arange(0, 32, NOISE_BITS, dtype=jnp.uint32)
    levels = (words >> shifts) & jnp.uint32(2**NOISE_BITS - 1)
    unit = (levels.astype(jnp.float32) + 0.5) * (2.0 / 2**NOISE_BITS) - 1.0
    return unit.reshape(shape)


def smooth(fields: jax.Array, sigma: float) -> jax.Array:
    """Gaussian smoothing of the last two axes (zeros beyond the edges), ``G F Gᵀ``;
    the leading axes moved first (``(batch, 2, h, w)`` comes back ``(2, batch, h, w)``)."""
    g_rows = jnp.asarray(gaussian_matrix(fields.shape[-2], sigma))
    g_columns = jnp.asarray(gaussian_matrix(fields.shape[-1], sigma))
    smoothed = jnp.einsum("ij,...jk,lk->...il", g_rows, fields, g_columns)
    return jnp.moveaxis(smoothed, -3, 0)


def augment_batch(images: jax.Array, key: jax.Array, augment: Augment) -> jax.Array:
    """One random augmentation of each image of a minibatch, as float32 in [0, 1].

    ``images``: ``(batch, height, width)``, integers (scaled by 1/255) or floats.

    Example::

        >>> import jax, jax.numpy as jnp
        >>> image = jnp.zeros((1, 28, 28), jnp.uint8).at[0, 10, 10].set(255)
        >>> moved = augment_batch(image, jax.random.key(0), Augment(shift=2))
        >>> float(moved.sum()), moved.shape
        (1.0, (1, 28, 28))
    """
    batch, height, width = images.shape
    if height != width:
        raise ValueError(f"augmentation needs square images, got {height}x{width}")
    floats = images.astype(jnp.float32)
    if jnp.issubdtype(images.dtype, jnp.integer):
        floats = floats / 255.0
    rows, columns = source_coordinates(key, batch, height, augment)
    return resample(floats, rows, columns)


def step_key(lane_key: jax.Array, epoch_index, step_in_epoch) -> jax.Array:
    """The augmentation key of one training step: folded from the lane's key (its seed),
    the epoch and the step within it."""
    key = jax.random.fold_in(lane_key, AUGMENT_FOLD)
    return jax.random.fold_in(jax.random.fold_in(key, epoch_index), step_in_epoch)
