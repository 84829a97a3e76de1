import numpy as np
import pytest
from PIL import Image

from attnyolo.data import ImageError, letterbox, load_image, resize


def _gradient(h=20, w=30):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 8, y * 12, (x + y) * 4], axis=-1).astype(np.uint8)


def test_rgb_png_is_read_exactly(tmp_path):
    rgb = _gradient()
    Image.fromarray(rgb).save(tmp_path / "a.png")
    np.testing.assert_array_equal(load_image(tmp_path / "a.png"), rgb)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "LA"])
def test_modes_become_rgb(tmp_path, mode):
    image = Image.fromarray(_gradient()).convert(mode)
    suffix = "jpg" if mode == "CMYK" else "png"
    image.save(tmp_path / f"x.{suffix}")
    out = load_image(tmp_path / f"x.{suffix}")
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    if mode == "L":
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257 * 100], [257 * 200, 65535]], np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")  # mode I;16
    out = load_image(tmp_path / "deep.png")
    np.testing.assert_array_equal(out[..., 0], [[0, 100], [200, 255]])


def test_exif_orientation_is_applied(tmp_path):
    rgb = _gradient(20, 30)  # 30 wide, 20 high
    image = Image.fromarray(rgb)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    image.save(tmp_path / "phone.jpg", exif=exif, quality=100)
    out = load_image(tmp_path / "phone.jpg")
    assert out.shape == (30, 20, 3)
    # The top-left pixel displayed is the stored bottom-left one after a clockwise rotation.
    np.testing.assert_allclose(out[0, 0].astype(int), rgb[-1, 0].astype(int), atol=12)


def test_bad_files_name_the_file(tmp_path):
    with pytest.raises(ImageError, match="missing.jpg: no such image file"):
        load_image(tmp_path / "missing.jpg")
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(ImageError, match="notes.jpg: not an image file"):
        load_image(tmp_path / "notes.jpg")
    Image.fromarray(_gradient(200, 200)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.jpg: cannot read image"):
        load_image(tmp_path / "cut.jpg")
    (tmp_path / "folder.jpg").mkdir()
    with pytest.raises(ImageError, match="folder.jpg"):
        load_image(tmp_path / "folder.jpg")


def test_letterbox_transform():
    image = np.full((100, 200, 3), 255, np.uint8)  # 200 wide, 100 high
    out, (sx, sy, px, py) = letterbox(image, (64, 96))
    # scale = min(96/200, 64/100) = 0.48 -> 96x48, padded by (64 - 48) / 2 = 8 rows each side.
    assert out.shape == (64, 96, 3)
    assert (sx, sy, px, py) == (96 / 200, 48 / 100, 0, 8)
    assert (out[:8] == 128).all() and (out[56:] == 128).all() and (out[8:56] == 255).all()
    out, transform = resize(image, (64, 96))
    assert out.shape == (64, 96, 3) and tuple(transform) == (96 / 200, 64 / 100, 0, 0)


def test_sixteen_bit_rgb_png(tmp_path):
    import cv2

    deep = np.random.default_rng(0).integers(0, 65535, (10, 12, 3)).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), deep[..., ::-1])  # OpenCV writes BGR
    out = load_image(tmp_path / "deep.png")
    np.testing.assert_array_equal(out.astype(int), deep.astype(int) >> 8)


def _photo(h, w, seed=0):
    """Noise over a gradient: sharp detail, where the two bicubic filters differ most."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    smooth = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256], -1)
    return np.clip(smooth + rng.integers(-60, 61, (h, w, 3)), 0, 255).astype(np.uint8)


def _pil_letterbox(image, size):
    """The original's `resize_image(letterbox_image=True)`, in Pillow, from its facts."""
    h, w = size
    ih, iw = image.shape[:2]
    scale = min(w / iw, h / ih)
    nw, nh = int(iw * scale), int(ih * scale)
    canvas = Image.new("RGB", (w, h), (128, 128, 128))
    canvas.paste(
        Image.fromarray(image).resize((nw, nh), Image.BICUBIC), ((w - nw) // 2, (h - nh) // 2)
    )
    return np.asarray(canvas)


# Down and up, square and not, odd sizes on either side.
SHAPES = [(375, 500), (640, 427), (121, 77), (13, 29), (1, 9)]
SIZES = [(416, 416), (64, 96), (33, 47), (1200, 1000)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("size", SIZES)
def test_pillow_filter_is_pillows_own_bicubic(shape, size):
    image = _photo(*shape)
    h, w = size
    out, _ = resize(image, size, resize_filter="pillow")
    expected = np.asarray(Image.fromarray(image).resize((w, h), Image.BICUBIC))
    np.testing.assert_array_equal(out, expected)
    out, _ = letterbox(image, size, resize_filter="pillow")
    np.testing.assert_array_equal(out, _pil_letterbox(image, size))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("size", SIZES)
def test_default_filter_is_opencvs_bicubic_as_before(shape, size):
    import cv2

    image = _photo(*shape)
    h, w = size
    expected = cv2.resize(image, (w, h), interpolation=cv2.INTER_CUBIC)
    for out, _ in (resize(image, size), resize(image, size, resize_filter="opencv")):
        np.testing.assert_array_equal(out, expected)
    ih, iw = shape
    scale = min(w / iw, h / ih)
    nw, nh = max(1, int(iw * scale)), max(1, int(ih * scale))
    expected = np.full((h, w, 3), 128, np.uint8)
    px, py = (w - nw) // 2, (h - nh) // 2
    expected[py : py + nh, px : px + nw] = cv2.resize(
        image, (nw, nh), interpolation=cv2.INTER_CUBIC
    )
    for out, transform in (letterbox(image, size), letterbox(image, size, resize_filter="opencv")):
        np.testing.assert_array_equal(out, expected)
        assert tuple(transform) == (nw / iw, nh / ih, px, py)


def test_the_filters_differ_most_when_shrinking():
    image = _photo(640, 480)
    # Noise shrunk 4x: about 17 grey levels apart on average; enlarged 2x: about 2.
    for size, low, high in (((160, 120), 10, 30), ((1280, 960), 0, 3)):
        a, _ = resize(image, size, resize_filter="opencv")
        b, _ = resize(image, size, resize_filter="pillow")
        assert low < np.abs(a.astype(int) - b.astype(int)).mean() < high, size


@pytest.mark.parametrize("bad", ["cv2", "PIL", "", None])
def test_an_unknown_resize_filter_names_the_valid_ones(bad):
    image = _photo(20, 30)
    for sizer in (letterbox, resize):
        with pytest.raises(
            ValueError, match=r"unknown resize_filter .*; choose from opencv, pillow"
        ):
            sizer(image, (16, 16), resize_filter=bad)


def test_the_pillow_filter_takes_rgb_uint8_only():
    with pytest.raises(ValueError, match="RGB uint8"):
        resize(np.zeros((4, 4, 3), np.float32), (8, 8), resize_filter="pillow")
