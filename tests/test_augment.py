"""Augmentation against NumPy and SciPy: where pixels land, what fills the borders, what the
elastic field does, and that only the training minibatches are ever augmented."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

import flaxmnist
from flaxmnist.core.augment import (
    Augment,
    augment_batch,
    coordinates,
    gaussian_matrix,
    resample,
    smooth,
    step_key,
    uniform_field,
)
from flaxmnist.core.losses import make_evaluate
from flaxmnist.core.models import MLP


def numpy_shift(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``image`` moved down ``dy`` and right ``dx`` pixels, zeros where nothing lands."""
    out = np.zeros_like(image)
    h, w = image.shape
    for r, c in itertools.product(range(h), range(w)):
        if 0 <= r + dy < h and 0 <= c + dx < w:
            out[r + dy, c + dx] = image[r, c]
    return out


def numpy_bilinear(image: np.ndarray, r: float, c: float) -> float:
    """``image`` read at (r, c) by bilinear interpolation, zeros outside, by hand."""
    r0, c0 = int(np.floor(r)), int(np.floor(c))
    total = 0.0
    for rr, cc in itertools.product((r0, r0 + 1), (c0, c0 + 1)):
        weight = (1 - abs(r - rr)) * (1 - abs(c - cc))
        inside = 0 <= rr < image.shape[0] and 0 <= cc < image.shape[1]
        total += weight * (image[rr, cc] if inside else 0.0)
    return total


def test_a_shifted_pixel_lands_where_it_should_and_borders_fill_with_zeros():
    image = np.zeros((28, 28), np.float32)
    image[10, 12], image[0, 0], image[27, 5] = 1.0, 0.5, 0.25
    offsets = jnp.array([[2, -1], [-2, 2], [0, 0]])
    rows, columns = coordinates(3, 28, offsets=offsets)
    moved = np.asarray(resample(jnp.asarray(np.stack([image] * 3)), rows, columns))
    for out, (dy, dx) in zip(moved, offsets.tolist(), strict=True):
        np.testing.assert_array_equal(out, numpy_shift(image, dy, dx))
    assert moved[0, 12, 11] == 1.0 and moved[0, 0, 0] == 0.0  # (0, 0) moved off; zero came in
    assert moved[1, 8, 14] == 1.0 and moved[1, 27, 5] == 0.0  # 27 - 2 = 25: the row moved up
    assert moved[1, 25, 7] == 0.25


def test_random_shifts_are_whole_pixels_within_the_bound_and_cover_it():
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, (400, 28, 28)).astype(np.uint8)  # no zero pixel inside
    moved = np.asarray(augment_batch(jnp.asarray(images), jax.random.key(1), Augment(shift=2)))
    seen = set()
    for image, out in zip(images / np.float32(255), moved, strict=True):
        (match,) = [
            (dy, dx)
            for dy, dx in itertools.product(range(-2, 3), repeat=2)
            if np.allclose(out, numpy_shift(image.astype(np.float32), dy, dx), rtol=0, atol=1e-7)
        ]
        seen.add(match)
    assert seen == set(itertools.product(range(-2, 3), repeat=2))


def test_rotation_by_a_quarter_turn_is_numpys_rot90():
    image = np.random.default_rng(1).random((28, 28)).astype(np.float32)
    rows, columns = coordinates(1, 28, angle=jnp.array([np.pi / 2]))
    turned = np.asarray(resample(jnp.asarray(image[None]), rows, columns))[0]
    # source(p) = c + R(-90°)(p - c): output (r, c) reads input (c, 27 - r): np.rot90 (k=-1)
    np.testing.assert_allclose(turned, np.rot90(image, k=-1), atol=1e-5)


def test_scaling_reads_towards_the_centre_by_hand():
    image = np.random.default_rng(2).random((28, 28)).astype(np.float32)
    rows, columns = coordinates(1, 28, factor=jnp.array([2.0]))
    zoomed = np.asarray(resample(jnp.asarray(image[None]), rows, columns))[0]
    for r, c in [(0, 0), (5, 20), (13, 14), (27, 27)]:
        expected = numpy_bilinear(image, 13.5 + (r - 13.5) / 2, 13.5 + (c - 13.5) / 2)
        assert zoomed[r, c] == pytest.approx(expected, abs=1e-6)


def test_a_known_displacement_field_is_read_bilinearly():
    image = np.random.default_rng(3).random((28, 28)).astype(np.float32)
    field = np.zeros((2, 1, 28, 28), np.float32)
    field[0, 0] = 0.25  # every pixel reads a quarter row further down ...
    field[1, 0, :, 14:] = -1.5  # ... and the right half 1.5 columns to the left
    rows, columns = coordinates(1, 28, displacement=jnp.asarray(field))
    out = np.asarray(resample(jnp.asarray(image[None]), rows, columns))[0]
    for r, c in [(0, 0), (3, 13), (3, 14), (27, 27), (20, 15)]:
        expected = numpy_bilinear(image, r + 0.25, c + (-1.5 if c >= 14 else 0.0))
        assert out[r, c] == pytest.approx(expected, abs=1e-6)
    assert out[27, 0] == pytest.approx(0.75 * image[27, 0], abs=1e-6)  # row 27.25: zeros below


def test_the_elastic_field_is_scipys_gaussian_smoothing():
    field = np.random.default_rng(4).uniform(-1, 1, (3, 2, 28, 28)).astype(np.float32)
    for sigma in (1.0, 4.0):
        matrix = gaussian_matrix(28, sigma)
        np.testing.assert_allclose(
            matrix @ field[0, 0], scipy.ndimage.gaussian_filter1d(field[0, 0], sigma, axis=0,
            mode="constant"), atol=1e-6,
        )  # fmt: skip
        smoothed = np.asarray(smooth(jnp.asarray(field), sigma))  # (2, batch, 28, 28)
        for b, d in itertools.product(range(3), range(2)):
            expected = scipy.ndimage.gaussian_filter(field[b, d], sigma, mode="constant")
            np.testing.assert_allclose(smoothed[d, b], expected, atol=1e-6)


def test_draws_depend_on_seed_epoch_and_step_only():
    images = jnp.asarray(np.random.default_rng(5).integers(0, 256, (8, 28, 28)), jnp.uint8)
    augment = Augment(shift=2, rotate=10, scale=0.1, elastic_alpha=8, elastic_sigma=3)

    def draw(seed, epoch, step):
        key = step_key(jax.random.key(seed), epoch, step)
        return np.asarray(augment_batch(images, key, augment))

    np.testing.assert_array_equal(draw(0, 1, 2), draw(0, 1, 2))
    for other in [(1, 1, 2), (0, 2, 2), (0, 1, 3)]:
        assert not np.array_equal(draw(0, 1, 2), draw(*other))


def test_augmentation_off_is_the_identity():
    images = jnp.asarray(np.random.default_rng(6).integers(0, 256, (4, 28, 28)), jnp.uint8)
    out = augment_batch(images, jax.random.key(0), Augment())
    np.testing.assert_allclose(np.asarray(out), np.asarray(images) / np.float32(255), atol=1e-7)


@pytest.mark.parametrize(
    "settings",
    [{"shift": -1}, {"scale": 1.0}, {"elastic_sigma": 0.0}, {"rotate": -5.0}],
)
def test_bad_strengths_are_refused(settings):
    with pytest.raises(ValueError):
        Augment(**settings)


def test_the_holdout_and_test_set_are_never_augmented():
    """The recorded accuracies are those of the returned parameters on the raw images."""
    data = flaxmnist.make_splits(flaxmnist.load_mnist(), limit_train=400)
    data = data._replace(val_images=data.val_images[:500], val_labels=data.val_labels[:500])
    data = data._replace(test_images=data.test_images[:500], test_labels=data.test_labels[:500])
    augment = Augment(shift=3, rotate=20, elastic_alpha=20, elastic_sigma=3)
    spec = flaxmnist.TrainSpec(hidden=(16,), epochs=2, batch_size=100, augment=augment)
    params, history = jax.jit(flaxmnist.make_train(spec))(
        flaxmnist.make_hyperparams(spec, 1e-3), jax.random.key(0), data
    )
    evaluate = make_evaluate(MLP((16,)), 1000)
    for split in ("val", "test"):
        images, labels = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
        loss, accuracy = evaluate(params, images, labels)
        # the same count of correct images (the division may round apart in another program)
        assert round(float(history[f"{split}_accuracy"][-1]) * 500) == round(float(accuracy) * 500)
        assert float(history[f"{split}_loss"][-1]) == pytest.approx(float(loss), rel=1e-5)
        augmented = augment_batch(images, jax.random.key(3), augment)
        moved, _ = evaluate(params, augmented, labels)  # what an augmented split would give
        assert abs(float(moved) - float(loss)) > 1e-3
    plain = flaxmnist.TrainSpec(hidden=(16,), epochs=2, batch_size=100)
    _, unaugmented = jax.jit(flaxmnist.make_train(plain))(
        flaxmnist.make_hyperparams(plain, 1e-3), jax.random.key(0), data
    )
    assert history["train_loss"][0] != unaugmented["train_loss"][0]  # training was augmented


def test_the_elastic_noise_is_uniform_on_256_levels_and_independent():
    noise = np.asarray(uniform_field(jax.random.key(0), (200, 2, 28, 28)))
    levels = np.round((noise + 1) * 128 - 0.5).astype(int)
    np.testing.assert_allclose((levels + 0.5) / 128 - 1, noise, atol=1e-6)
    counts = np.bincount(levels.ravel(), minlength=256)
    assert counts.min() > 0.8 * noise.size / 256 and counts.max() < 1.2 * noise.size / 256
    assert abs(noise.mean()) < 0.005 and abs(noise.std() - 1 / np.sqrt(3)) < 0.005
    flat = noise.reshape(-1, 28)
    assert abs(np.corrcoef(flat[:, :-1].ravel(), flat[:, 1:].ravel())[0, 1]) < 0.01
    other = np.asarray(uniform_field(jax.random.key(1), (200, 2, 28, 28)))
    assert abs(np.corrcoef(noise.ravel(), other.ravel())[0, 1]) < 0.01
