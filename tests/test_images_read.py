"""read_image / image_size: EXIF, colour layouts, bit depths, bad files, huge headers."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from core.data.images import (
    IMAGE_EXTENSIONS,
    _jpeg_is_truncated,
    apply_orientation,
    image_size,
    read_image,
)
from core.errors import ImageReadError


def _rgb(h: int = 12, w: int = 20, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save_with_orientation(path: Path, rgb: np.ndarray, orientation: int, fmt: str) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    kwargs = {"quality": 100, "subsampling": 0} if fmt == "JPEG" else {}
    Image.fromarray(rgb).save(path, format=fmt, exif=exif, **kwargs)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pil_exif_transpose(tmp_path: Path, orientation: int) -> None:
    # PNG keeps pixels lossless, so the oracle (PIL's own exif_transpose) must match exactly.
    rgb = _rgb(6, 10, seed=orientation)
    path = tmp_path / f"o{orientation}.png"
    _save_with_orientation(path, rgb, orientation, "PNG")
    with Image.open(path) as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))[:, :, ::-1]
    got = read_image(path)
    assert got.dtype == np.uint8 and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    assert image_size(path) == (expected.shape[1], expected.shape[0])


@pytest.mark.parametrize("orientation,size", [(6, (12, 20)), (8, (12, 20)), (3, (20, 12)), (1, (20, 12))])
def test_exif_rotated_jpeg(tmp_path: Path, orientation: int, size: tuple[int, int]) -> None:
    """A phone portrait: stored 20x12 landscape + tag 6/8 is displayed as 12x20."""
    rgb = np.zeros((12, 20, 3), np.uint8)
    rgb[:4, :4] = (255, 0, 0)  # a red corner patch in the stored top-left
    path = tmp_path / f"phone{orientation}.jpg"
    _save_with_orientation(path, rgb, orientation, "JPEG")
    img = read_image(path)
    assert (img.shape[1], img.shape[0]) == size
    assert image_size(path) == size
    # where the red corner ends up: tag 6 = rotate 90 CW -> top-right; 8 = 90 CCW -> bottom-left
    row, col = {1: (1, 1), 3: (-2, -2), 6: (1, -2), 8: (-2, 1)}[orientation]
    b, g, r = (int(v) for v in img[row, col])
    assert r > 200 and g < 60 and b < 60
    assert int(img[-row - 1, -col - 1][2]) < 60  # the opposite corner stays black


def test_cv2_unchanged_ignores_exif_so_we_apply_it_once(tmp_path: Path) -> None:
    rgb = _rgb(8, 14)
    path = tmp_path / "r.png"
    _save_with_orientation(path, rgb, 6, "PNG")
    assert read_image(path).shape[:2] == (14, 8)
    np.testing.assert_array_equal(read_image(path), np.rot90(rgb[:, :, ::-1], k=-1))


def test_grayscale_png(tmp_path: Path) -> None:
    g = np.arange(60, dtype=np.uint8).reshape(6, 10) * 4
    Image.fromarray(g, mode="L").save(tmp_path / "g.png")
    img = read_image(tmp_path / "g.png")
    assert img.shape == (6, 10, 3) and img.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(img[:, :, c], g)


def test_rgba_png_drops_alpha(tmp_path: Path) -> None:
    rgba = np.random.default_rng(1).integers(0, 256, (5, 7, 4), dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(img, rgba[:, :, 2::-1])


def test_16bit_png_scales_to_8bit(tmp_path: Path) -> None:
    vals = np.array([[0, 257, 128 * 257], [65535, 1000, 65280]], dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "d.png"), vals)
    img = read_image(tmp_path / "d.png")
    expected = np.array([[0, 1, 128], [255, 4, 254]], dtype=np.uint8)  # round(v / 257)
    assert img.shape == (2, 3, 3)
    np.testing.assert_array_equal(img[:, :, 0], expected)
    np.testing.assert_array_equal(img[:, :, 2], expected)


def test_16bit_color_png(tmp_path: Path) -> None:
    bgr16 = np.zeros((3, 4, 3), np.uint16)
    bgr16[..., 0], bgr16[..., 1], bgr16[..., 2] = 65535, 257 * 10, 0
    cv2.imwrite(str(tmp_path / "c16.png"), bgr16)
    img = read_image(tmp_path / "c16.png")
    assert (img[..., 0] == 255).all() and (img[..., 1] == 10).all() and (img[..., 2] == 0).all()


def test_palette_png(tmp_path: Path) -> None:
    p = Image.new("P", (4, 3))
    p.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    p.putdata([0, 1] * 6)
    p.save(tmp_path / "p.png")
    img = read_image(tmp_path / "p.png")
    assert img.shape == (3, 4, 3)
    assert tuple(img[0, 0]) == (0, 0, 255) and tuple(img[0, 1]) == (0, 255, 0)


def test_non_ascii_path(tmp_path: Path) -> None:
    folder = tmp_path / "фото データ"
    folder.mkdir()
    path = folder / "кошка_猫.png"
    rgb = _rgb()
    Image.fromarray(rgb).save(path)
    np.testing.assert_array_equal(read_image(path), rgb[:, :, ::-1])
    assert image_size(path) == (20, 12)
    assert image_size(str(path)) == (20, 12)


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.jpg.*empty \(0 bytes\)"):
        read_image(path)
    with pytest.raises(ImageReadError, match=r"empty\.jpg"):
        image_size(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match=r"nope\.png: image file not found"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match=r"nope\.png: image file not found"):
        image_size(tmp_path / "nope.png")


def test_folder_is_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "d.jpg").mkdir()
    with pytest.raises(ImageReadError, match=r"d\.jpg: is a folder"):
        read_image(tmp_path / "d.jpg")


def test_truncated_jpeg(tmp_path: Path) -> None:
    Image.fromarray(_rgb(64, 64)).save(tmp_path / "full.jpg", quality=95)
    data = (tmp_path / "full.jpg").read_bytes()
    for cut in (2, 300, len(data) // 2):
        bad = tmp_path / f"cut{cut}.jpg"
        bad.write_bytes(data[: len(data) - cut])
        with pytest.raises(ImageReadError, match=rf"cut{cut}\.jpg: .*(truncated|cannot decode)"):
            read_image(bad)


def test_jpeg_truncation_check_ignores_thumbnail_eoi(tmp_path: Path) -> None:
    """The EOI of an EXIF thumbnail must not make a truncated main image look complete."""
    Image.fromarray(_rgb(40, 40)).save(tmp_path / "t.jpg", quality=90)
    data = (tmp_path / "t.jpg").read_bytes()
    assert not _jpeg_is_truncated(data)
    assert _jpeg_is_truncated(data[:-2])
    # splice a fake APP1 segment holding an EOI right after SOI
    app1_payload = b"Exif\x00\x00" + b"\xff\xd8thumb\xff\xd9"
    spliced = data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1_payload) + 2) + app1_payload + data[2:]
    assert not _jpeg_is_truncated(spliced)
    assert _jpeg_is_truncated(spliced[:-2])
    # stray bytes between header segments are skipped, as libjpeg does
    assert not _jpeg_is_truncated(data[:2] + b"\x00\x00" + data[2:])
    # trailing bytes after EOI (some cameras append data) are fine
    assert not _jpeg_is_truncated(data + b"\x00" * 10)


def test_corrupt_bytes(tmp_path: Path) -> None:
    path = tmp_path / "junk.png"
    path.write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(ImageReadError, match=r"junk\.png: cannot decode"):
        read_image(path)
    with pytest.raises(ImageReadError, match=r"junk\.png"):
        image_size(path)


def test_truncated_png(tmp_path: Path) -> None:
    Image.fromarray(_rgb(64, 64)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "half.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"half\.png"):
        read_image(tmp_path / "half.png")


def _png_header_only(path: Path, w: int, h: int, pad: int = 0) -> None:
    """A PNG whose IHDR claims w x h with an empty IDAT: header parsers see the size. ``pad``
    bytes of a private ancillary chunk make the file as big as a real, well compressed one."""

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    padding = chunk(b"prVt", bytes(pad)) if pad else b""
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + padding + chunk(b"IDAT", zlib.compress(b""))
                     + chunk(b"IEND", b""))


def test_huge_image_size_without_decompression_bomb_error(tmp_path: Path) -> None:
    # 20000 x 15000 = 300 MP, past PIL's default bomb *error* threshold (~179 MP); 1 MB is about
    # the smallest a PNG that size can be (deflate's best ratio), so it is not refused as a bomb
    path = tmp_path / "aerial.png"
    _png_header_only(path, 20000, 15000, pad=1 << 20)
    assert image_size(path) == (20000, 15000)
    _png_header_only(tmp_path / "tiny.png", 20000, 15000)  # the same claim in 60 bytes: a bomb (issue #35)
    with pytest.raises(ImageReadError, match=r"tiny\.png: header claims 20000x15000 pixels but the file has only"):
        image_size(tmp_path / "tiny.png")


def test_image_beyond_decoder_limit_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "giga.png"
    _png_header_only(path, 40000, 40000)
    with pytest.raises(ImageReadError, match=r"giga\.png: image too large.*40000x40000"):
        read_image(path)


def test_gif_via_pil_fallback(tmp_path: Path) -> None:
    rgb = np.zeros((5, 6, 3), np.uint8)
    rgb[:, :3] = (0, 0, 255)
    Image.fromarray(rgb).save(tmp_path / "a.gif")
    img = read_image(tmp_path / "a.gif")
    assert img.shape == (5, 6, 3)
    assert tuple(img[0, 0]) == (255, 0, 0)  # blue in BGR


def test_apply_orientation_inverse_pairs() -> None:
    img = _rgb(3, 5)
    # 6 (90 CW) and 8 (90 CCW) undo each other; 2/3/4/5/7 are their own inverse
    np.testing.assert_array_equal(apply_orientation(apply_orientation(img, 6), 8), img)
    for o in (2, 3, 4, 5, 7):
        np.testing.assert_array_equal(apply_orientation(apply_orientation(img, o), o), img)
    assert apply_orientation(img, 1) is img


def test_extensions_constant() -> None:
    assert {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"} <= IMAGE_EXTENSIONS
    assert all(e.startswith(".") and e == e.lower() for e in IMAGE_EXTENSIONS)


def test_gray_alpha_and_cmyk(tmp_path: Path) -> None:
    rgb = _rgb(8, 10, seed=3)
    la = np.stack([rgb[:, :, 0], rgb[:, :, 1]], axis=-1)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    img = read_image(tmp_path / "la.png")
    assert img.shape == (8, 10, 3)
    np.testing.assert_array_equal(img[:, :, 1], rgb[:, :, 0])  # gray replicated, alpha dropped
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg", quality=100, subsampling=0)
    cmyk = read_image(tmp_path / "c.jpg")
    assert cmyk.shape == (8, 10, 3)
    assert np.abs(cmyk.astype(int) - rgb[:, :, ::-1]).mean() < 4  # converted, not read as BGR+alpha
