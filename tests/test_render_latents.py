"""3DIdent latents: shapes, ranges, determinism and the original's fixed-variable flags."""

import numpy as np
import pytest

from clica.errors import ClicaError
from clica.render.latents import LatentOptions, cartesian_to_spherical, generate_latents, spherical_to_cartesian

TWO_PI = 2 * np.pi


def test_periodic_shapes_ranges_and_dtypes():
    raw, lat = generate_latents(LatentOptions(n_points=2000, seed=1))
    assert raw.shape == (2000, 11) and lat.shape == (2000, 10)
    assert raw.dtype == np.float32 and lat.dtype == np.float32
    assert np.all(np.abs(raw[:, :3]) <= 1)
    np.testing.assert_allclose(np.linalg.norm(raw[:, 3:], axis=1), 1, atol=1e-5)
    assert lat[:, :2].min() >= -3 and lat[:, :2].max() <= 3
    assert lat[:, 2].min() >= 0 and lat[:, 2].max() <= 3
    assert lat[:, 3:].min() >= 0 and lat[:, 3:].max() <= TWO_PI + 1e-5
    # positions are the box coordinates, z mapped from [-1, 1] to [0, 3]
    np.testing.assert_allclose(lat[:, :2], 3 * raw[:, :2], atol=1e-5)
    np.testing.assert_allclose(lat[:, 2], 1.5 * (raw[:, 2] + 1), atol=1e-5)
    # the angles are the sphere point's hyperspherical angles (first six doubled)
    phi = lat[:, 3:].astype(np.float64)
    phi[:, :-1] /= 2
    np.testing.assert_allclose(spherical_to_cartesian(phi), raw[:, 3:], atol=1e-4)


def test_non_periodic_is_a_scaled_box():
    raw, lat = generate_latents(LatentOptions(n_points=500, seed=2, non_periodic_rotation_and_color=True))
    assert raw.shape == (500, 10) and lat.shape == (500, 10)
    assert np.abs(raw).max() <= 1
    scale = np.array([3, 3, 3] + [np.pi / 2] * 7)
    np.testing.assert_allclose(lat, raw * scale, rtol=1e-5, atol=1e-5)


def test_deterministic_from_seed():
    a = generate_latents(LatentOptions(n_points=50, seed=7))
    b = generate_latents(LatentOptions(n_points=50, seed=7))
    c = generate_latents(LatentOptions(n_points=50, seed=8))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])


def test_spherical_round_trip():
    x = np.random.default_rng(0).standard_normal((100, 8))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    r, phi = cartesian_to_spherical(x)
    np.testing.assert_allclose(r, 1)
    np.testing.assert_allclose(spherical_to_cartesian(phi), x, atol=1e-12)


def test_fixed_variable_flags():
    _, lat = generate_latents(LatentOptions(n_points=20, position_only=True))
    assert np.ptp(lat[:, 3:], axis=0).max() < 1e-5 and np.ptp(lat[:, :3], axis=0).min() > 0
    _, lat = generate_latents(LatentOptions(n_points=20, rotation_and_color_only=True))
    np.testing.assert_allclose(lat[:, :3], np.tile([0, 0, 1.5], (20, 1)))
    np.testing.assert_allclose(np.linalg.norm(generate_latents(
        LatentOptions(n_points=20, rotation_and_color_only=True))[0][:, 3:], axis=1), 1, atol=1e-5)

    np_ = dict(n_points=20, non_periodic_rotation_and_color=True)
    _, lat = generate_latents(LatentOptions(rotation_only=True, **np_))
    np.testing.assert_allclose(lat[:, :3], 0)
    np.testing.assert_allclose(lat[:, 7:], np.tile([-np.pi / 2, 0, np.pi / 2], (20, 1)), atol=1e-6)
    _, lat = generate_latents(LatentOptions(color_only=True, **np_))
    np.testing.assert_allclose(lat[:, 3:7], np.tile(np.array([-1, -0.5, 0.5, 1]) * np.pi / 2, (20, 1)),
                               atol=1e-6)
    _, lat = generate_latents(LatentOptions(fixed_spotlight=True, **np_))
    np.testing.assert_allclose(lat[:, [6, 8]], 0)
    # as in the original, these flags do nothing in the periodic variant (and say so)
    opts = LatentOptions(n_points=20, fixed_spotlight=True)
    assert opts.ignored_flags() == ["--fixed-spotlight"]
    assert np.array_equal(generate_latents(opts)[1], generate_latents(LatentOptions(n_points=20))[1])


def test_multiple_objects_layout():
    raw, lat = generate_latents(LatentOptions(n_points=30, n_objects=2))
    assert raw.shape == (30, 6 + 14) and lat.shape == (30, 19)
    assert lat[:, [2, 11]].min() >= 0          # both objects' z in [0, 3]


@pytest.mark.parametrize("kwargs", [dict(position_only=True, rotation_and_color_only=True),
                                    dict(position_only=True, n_objects=2),
                                    dict(n_points=0), dict(n_objects=0)])
def test_bad_flag_combinations(kwargs):
    with pytest.raises(ClicaError):
        generate_latents(LatentOptions(**{"n_points": 5, **kwargs}))
