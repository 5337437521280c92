"""Issue #35: an image header claiming more pixels than may be decoded (or than its file can
hold) is refused by name, with the claimed size, before any decoder allocates for it: never a
MemoryError or a PIL DecompressionBombError traceback, whichever reader meets it."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from core.cli import main
from core.data import images
from core.data.image_cache import read_downscaled
from core.errors import ImageLimitError, ImageReadError, LimitError


def crafted_png(path: Path, width: int, height: int, depth: int = 8, color_type: int = 2) -> Path:
    """A few-byte PNG whose IHDR claims width x height (one tiny IDAT, no real pixels)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


@pytest.fixture
def no_decoding(monkeypatch):
    """Any pixel decode fails the test: the refusal must come from the header alone."""
    def refuse(*a, **k):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(images.cv2, "imdecode", refuse)
    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


BOMB_MESSAGE = "header claims 30000x30000 pixels but the file has only"


def test_tiny_png_claiming_30000x30000_is_refused_by_every_reader_before_decoding(tmp_path, no_decoding):
    bomb = crafted_png(tmp_path / "bomb.png", 30000, 30000)
    size = bomb.stat().st_size
    assert size < 200 and 30000 * 30000 <= images.MAX_PIXELS  # under the pixel limit: the bytes refuse it
    for read in (images.read_image, images.image_size, lambda p: read_downscaled(p, 1024)):
        with pytest.raises(ImageLimitError) as ei:
            read(bomb)
        msg = str(ei.value)
        assert msg.startswith(f"{bomb}: {BOMB_MESSAGE} {size} bytes (a complete PNG that size has at least ")
        assert msg.endswith("truncated, or a decompression bomb")
        assert isinstance(ei.value, LimitError) and isinstance(ei.value, ImageReadError)


def test_over_the_pixel_limit_is_refused_before_decoding(tmp_path, no_decoding, monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 100_000_000)
    bomb = crafted_png(tmp_path / "big.png", 30000, 30000)
    for read in (images.read_image, images.image_size):
        with pytest.raises(ImageLimitError, match=r"big\.png: image too large to decode \(30000x30000 = "
                           r"900,000,000 pixels, limit 100,000,000; raise OPENCV_IO_MAX_IMAGE_PIXELS"):
            read(bomb)


@pytest.mark.parametrize("mode,size", [("1", (3000, 3000)), ("RGB", (1500, 1500)), ("L", (4000, 100)),
                                       ("P", (2000, 2000))])
def test_highly_compressed_real_pngs_still_read(tmp_path, mode: str, size: tuple[int, int]) -> None:
    path = tmp_path / f"flat_{mode}.png"
    Image.new(mode, size).save(path, optimize=True)
    assert path.stat().st_size < size[0] * size[1] // 100  # far below 1 byte per pixel
    assert images.image_size(path) == size
    assert images.read_image(path).shape == (size[1], size[0], 3)


def test_gui_image_cache_refuses_it_too(tmp_path, no_decoding):
    pytest.importorskip("PySide6")
    from app.image_cache import load_display_image

    bomb = crafted_png(tmp_path / "bomb.png", 30000, 30000)
    with pytest.raises(ImageLimitError, match=rf"bomb\.png: {BOMB_MESSAGE}"):
        load_display_image(None, bomb)


def test_import_skips_the_bomb_by_name_and_keeps_the_rest(tmp_path, capsys):
    ds = tmp_path / "ds"
    (ds / "images").mkdir(parents=True)
    (ds / "labels").mkdir()
    Image.new("RGB", (10, 10)).save(ds / "images" / "ok.png")
    crafted_png(ds / "images" / "bomb.png", 30000, 30000)
    for stem in ("ok", "bomb"):
        (ds / "labels" / f"{stem}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (ds / "classes.txt").write_text("a\n")
    assert main(["import", "yolo", str(ds), str(tmp_path / "proj")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "MemoryError" not in err
    assert f"{ds / 'images' / 'bomb.png'}: {BOMB_MESSAGE}" in err
    assert (tmp_path / "proj" / "labels" / "ok.txt").exists()


def test_labelme_mask_bomb_is_one_skipped_shape(tmp_path):
    from core.data.formats.labelme import load_labelme

    Image.new("RGB", (20, 10)).save(tmp_path / "p.png")
    mask = crafted_png(tmp_path / "m.png", 30000, 30000).read_bytes()
    shapes = [{"label": "cat", "points": [[1, 1], [5, 1], [3, 4]], "shape_type": "polygon"},
              {"label": "cat", "points": [[1, 1], [5, 5]], "shape_type": "mask",
               "mask": base64.b64encode(mask).decode()}]
    (tmp_path / "p.json").write_text(json.dumps({"shapes": shapes, "imagePath": "p.png", "imageWidth": 20,
                                                 "imageHeight": 10}))
    res = load_labelme(tmp_path / "p.json")
    assert res.num_instances == 1 and len(res.problems) == 1
    assert "shapes[1]" in str(res.problems[0]) and f"mask: {BOMB_MESSAGE}" in str(res.problems[0])


def test_png_min_bytes_follows_bit_depth_and_channels() -> None:
    from core.bounded_input import png_min_bytes

    def head(w: int, h: int, depth: int, ctype: int) -> bytes:
        return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">IIBBBBB", w, h, depth, ctype,
                                                                                      0, 0, 0) + b"crc!"

    assert png_min_bytes(head(1032, 1032, 8, 0)) == 1032 * 1033 // 1032
    assert png_min_bytes(head(8000, 10, 1, 0)) == 10 * 1001 // 1032
    assert png_min_bytes(head(100, 100, 16, 6)) == 100 * 801 // 1032
    assert png_min_bytes(b"\xff\xd8\xff" + bytes(40)) is None  # not a PNG: no claim made
    assert np.isscalar(png_min_bytes(head(1, 1, 8, 2)))


def test_image_size_of_a_png_reads_only_its_header(tmp_path, no_decoding):
    Image.new("RGB", (50, 40)).save(tmp_path / "plain.png")  # no eXIf: PIL would decode to look for one
    assert images.image_size(tmp_path / "plain.png") == (50, 40)
