"""Rendered pixels respond to each latent as the scene says they should."""

import colorsys

import numpy as np
import pytest

from clica.render.preview import BASE_LATENT

SIZE = 64


@pytest.fixture(scope="module")
def renderer():
    from clica.render.renderer import Renderer, RenderSettings

    r = Renderer(RenderSettings.make(image_size=SIZE))
    yield r
    r.release()


def latent(**changes):
    from clica.render.latents import LATENT_NAMES

    z = BASE_LATENT.copy()
    for name, value in changes.items():
        z[LATENT_NAMES.index(name)] = value
    return z


def object_mask(renderer, **changes):
    """Pixels of the object: those that change when only the object's hue is flipped."""
    a, b = renderer.render(np.stack([latent(object_hue=0.0, **changes),
                                     latent(object_hue=np.pi, **changes)]))
    return np.abs(a.astype(int) - b.astype(int)).max(-1) > 8


def interior(mask):
    """The mask without its edge pixels (which anti-aliasing blends with the ground)."""
    m = mask.copy()
    m[1:] &= mask[:-1]
    m[:-1] &= mask[1:]
    m[:, 1:] &= mask[:, :-1]
    m[:, :-1] &= mask[:, 1:]
    return m


def centroid(mask):
    rows, cols = np.nonzero(mask)
    return np.array([rows.mean(), cols.mean()])


def hue_deg(rgb):
    return 360 * colorsys.rgb_to_hsv(*(np.asarray(rgb, float) / 255))[0]


def hue_distance(a, b):
    d = abs(a - b) % 360
    return min(d, 360 - d)


def test_same_latents_same_images_whatever_the_batch(renderer):
    z = np.stack([latent(), latent(x=1.0, gamma=2.0), latent(y=-2.0)])
    first = renderer.render(z)
    again = renderer.render(z[::-1], slots=[2, 1, 0])[::-1]
    alone = renderer.render(z[1:2], slots=[1])
    assert first.shape == (3, SIZE, SIZE, 3) and first.dtype == np.uint8
    assert np.array_equal(first, again)
    assert np.array_equal(first[1], alone[0])
    # in another tile, float rounding may move an edge pixel by at most a level or two
    moved = renderer.render(np.repeat(z[1:2], 5, 0))
    assert np.abs(moved.astype(int) - first[1].astype(int)).max() <= 3


def test_object_hue_changes_only_the_object(renderer):
    mask = object_mask(renderer)
    assert 10 < mask.sum() < 0.2 * SIZE * SIZE
    red, green = renderer.render(np.stack([latent(object_hue=0.0), latent(object_hue=2 * np.pi / 3)]))
    assert np.array_equal(red[~mask], green[~mask])           # the ground is left alone
    assert np.argmax(red[mask].mean(0)) == 0 and np.argmax(green[mask].mean(0)) == 1
    assert hue_distance(hue_deg(green[mask].mean(0)), 120) < 40


def test_background_hue_changes_the_ground(renderer):
    mask = object_mask(renderer)
    imgs = renderer.render(np.stack([latent(background_hue=h) for h in (0.0, 2 * np.pi / 3, 4 * np.pi / 3)]))
    for img, target in zip(imgs, (0, 120, 240)):
        top = img[:SIZE // 6].reshape(-1, 3).mean(0)          # far ground, away from object and spot
        assert hue_distance(hue_deg(top), target) < 10
    inner = interior(mask)
    assert inner.sum() > 5
    assert np.array_equal(imgs[0][inner], imgs[1][inner])      # the object is left alone


def test_position_moves_the_object_in_the_image(renderer):
    base = centroid(object_mask(renderer))
    right = centroid(object_mask(renderer, y=2.0))             # +y is image right
    down = centroid(object_mask(renderer, x=2.0))              # +x comes towards the camera: image down
    assert right[1] - base[1] > 3 and abs(right[0] - base[0]) < 3
    assert down[0] - base[0] > 3 and abs(down[1] - base[1]) < 3


def test_spotlight_angle_moves_the_light_pool(renderer):
    def pool(theta):
        img = renderer.render(latent(spotlight_angle=theta, spotlight_hue=0.0))[0].astype(float)
        lum = img.mean(-1)
        return centroid(lum > np.median(lum) + 25)

    left, right = pool(0.0), pool(np.pi)        # light from +y throws the pool to -y, and vice versa
    assert right[1] - left[1] > SIZE / 6
    back = pool(np.pi / 2)                       # light from the camera's side: pool behind, higher up
    assert back[0] < min(left[0], right[0])


def test_rotation_changes_silhouette_not_position(renderer):
    a = object_mask(renderer)
    b = object_mask(renderer, alpha=np.pi / 2, beta=0.7, gamma=2.0)
    iou = (a & b).sum() / (a | b).sum()
    assert iou < 0.85
    assert np.linalg.norm(centroid(a) - centroid(b)) < 0.06 * SIZE


def test_other_shapes_and_no_spotlights_render():
    from clica.render import render_latents_to_images

    z = np.stack([latent(), latent(spotlight_angle=1.0)])
    cube = render_latents_to_images(z, image_size=32, shape_names=["cube"], material_names=["MyMetal"])
    dark = render_latents_to_images(z, image_size=32, spotlights=False)
    lit = render_latents_to_images(z, image_size=32)
    assert cube.shape == (2, 32, 32, 3)
    assert dark.mean() < lit.mean()
    assert np.array_equal(dark[0], dark[1])        # the spotlight angle has no effect without spotlights


@pytest.mark.slow   # a fresh process importing torch and torchvision: ~10 s
def test_torchvision_imports_after_rendering():
    """Mesa's LLVM and triton's must not collide (torchvision after a GL context used to segfault)."""
    import subprocess
    import sys

    code = ("from clica.render import render_latents_to_images, generate_latents, LatentOptions\n"
            "render_latents_to_images(generate_latents(LatentOptions(n_points=1))[1], image_size=16)\n"
            "import torchvision.models\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
