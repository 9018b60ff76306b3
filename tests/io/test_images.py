"""Reading images: conversions that are said out loud, and refusals with one-line reasons."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest

from mgdl_fast import InputError, default_image, from_array, load_image


def write(path, array, **kwargs):
    iio.imwrite(path, array, **kwargs)
    return path


def write_bytes(path, content: bytes):
    path.write_bytes(content)
    return path


def test_uint8_grayscale_matches_the_papers_reading(shared_image):
    path = shared_image("cameraman.tif")
    image = load_image(path)
    assert image.pixels.shape == (256, 256, 1) and not image.notes
    np.testing.assert_array_equal(image.pixels[..., 0], iio.imread(path) / 255.0)


def test_gif_first_frame(shared_image):
    image = load_image(shared_image("butterfly.gif"))
    assert image.pixels.shape == (512, 512, 1)
    assert image.pixels.min() == pytest.approx(27 / 255) and image.pixels.max() == pytest.approx(
        212 / 255
    )


def test_default_image_is_skimage_camera():
    image = default_image()
    assert image.pixels.shape == (512, 512, 1) and image.source == "skimage.data.camera()"


def test_16_bit_is_scaled_and_noted(tmp_path):
    array = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    image = load_image(write(tmp_path / "deep.png", array))
    np.testing.assert_allclose(image.pixels[..., 0], array / 65535.0)
    assert any("16-bit" in note for note in image.notes)


@pytest.mark.parametrize("channels, kept", [(4, 3), (2, 1)])
def test_alpha_is_dropped_and_noted(tmp_path, channels, kept):
    array = np.random.default_rng(0).integers(0, 256, (6, 7, channels), dtype=np.uint8)
    image = load_image(write(tmp_path / "alpha.png", array))
    assert image.pixels.shape == (6, 7, kept)
    np.testing.assert_allclose(image.pixels, array[..., :kept] / 255.0)
    assert any("alpha channel dropped" in note for note in image.notes)


def test_rgb_keeps_three_channels(tmp_path):
    array = np.random.default_rng(1).integers(0, 256, (5, 9, 3), dtype=np.uint8)
    assert load_image(write(tmp_path / "rgb.png", array)).pixels.shape == (5, 9, 3)


def test_multi_frame_uses_the_first_and_says_so(tmp_path):
    frames = [np.full((4, 4), v, dtype=np.uint8) for v in (10, 200)]
    image = load_image(write(tmp_path / "anim.gif", frames))
    # imageio writes a palette GIF, which reads back as RGB
    assert image.pixels.shape[:2] == (4, 4) and any("2 frames" in n for n in image.notes)
    np.testing.assert_allclose(image.pixels, 10 / 255)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing.png", "image file not found"),
        (lambda p: p, "is a directory"),
        (lambda p: write_bytes(p / "empty.png", b""), "cannot read"),
        (lambda p: write_bytes(p / "text.png", b"not an image"), "cannot read"),
        (lambda p: write(p / "one.png", np.zeros((1, 1), np.uint8)), "1x1 pixels"),
        (lambda p: write(p / "row.png", np.zeros((1, 9), np.uint8)), "1x9 pixels"),
    ],
)
def test_bad_files_are_refused_in_one_line(tmp_path, make, message):
    with pytest.raises(InputError, match=message) as info:
        load_image(make(tmp_path))
    assert "\n" not in str(info.value)


def test_nan_and_out_of_range_floats_are_refused():
    pixels = np.full((4, 4), 0.5, dtype=np.float32)
    pixels[1, 2] = np.nan
    pixels[3, 3] = np.inf
    with pytest.raises(InputError, match="2 NaN or infinite values"):
        from_array(pixels)
    with pytest.raises(InputError, match=r"span \[0, 2\]; expected \[0, 1\]"):
        from_array(np.linspace(0, 2, 16).reshape(4, 4))


def test_float_tiff_with_nan_is_refused(tmp_path):
    pixels = np.full((4, 4), 0.25, dtype=np.float32)
    pixels[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        load_image(write(tmp_path / "nan.tiff", pixels))


def test_unsupported_layouts():
    with pytest.raises(InputError, match="unsupported image shape"):
        from_array(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(InputError, match="unsupported pixel type"):
        from_array(np.zeros((4, 4), np.int16))
