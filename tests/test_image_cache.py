"""train.cache_images: the disk cache of decoded, downscaled training images gives exactly the
pixels of a fresh decode, notices edited images, survives broken entries and a disk it cannot
write, and the trainer turns it off (with a warning naming the folder) when the disk is short."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from core.annotation import ImageAnnotation, Instance
from core.data import image_cache
from core.data.dataset import load_sample
from core.data.image_cache import DecodedImageCache, cache_for_training, read_downscaled
from core.data.images import image_size


def _photo(path: Path, w: int = 1200, h: int = 800, seed: int = 0, orientation: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (h // 40, w // 40, 3), dtype=np.uint8)
    rgb = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(rgb).save(path, format="JPEG", quality=92, exif=exif)
    return path


def _annotation(path: Path) -> ImageAnnotation:
    w, h = image_size(path)  # the displayed frame (EXIF applied), from the header
    poly = np.array([[0.1 * w, 0.1 * h], [0.6 * w, 0.15 * h], [0.4 * w, 0.7 * h]])
    return ImageAnnotation(path, w, h, [Instance(1, [poly])])


def test_cached_sample_equals_a_fresh_decode_and_the_second_read_does_not_decode(tmp_path, monkeypatch):
    paths = [_photo(tmp_path / "a.jpg"), _photo(tmp_path / "b.jpg", 1200, 800, 1, orientation=6)]
    cache = DecodedImageCache(tmp_path / "cache", 512)
    for p in paths:
        fresh = load_sample(p, _annotation, 3, 512)
        cold = load_sample(p, _annotation, 3, 512, cache)
        assert fresh.image.shape[:2] == ((341, 512) if p.name == "a.jpg" else (512, 341))  # EXIF 6 turns b
        assert np.array_equal(fresh.image, cold.image) and np.array_equal(fresh.masks, cold.masks)
    assert (cache.hits, cache.misses) == (0, 2)
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 2

    fresh_pixels = {p: load_sample(p, _annotation, 3, 512).image for p in paths}

    def no_decode(path):
        raise AssertionError(f"decoded {path} although it is cached")

    monkeypatch.setattr(image_cache, "read_image", no_decode)
    warm = DecodedImageCache(tmp_path / "cache", 512)  # another process (worker, next run)
    for p in paths:
        assert np.array_equal(load_sample(p, _annotation, 3, 512, warm).image, fresh_pixels[p])
    assert (warm.hits, warm.misses) == (2, 0)


def test_an_edited_image_and_another_size_bound_are_new_entries(tmp_path):
    path = _photo(tmp_path / "a.jpg", seed=0)
    cache = DecodedImageCache(tmp_path / "cache", 400)
    first = cache.get(path)
    _photo(path, seed=1)  # the user replaced the picture
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    second = cache.get(path)
    assert not np.array_equal(first, second)
    assert np.array_equal(second, read_downscaled(path, 400))
    bigger = DecodedImageCache(tmp_path / "cache", 800)
    assert bigger.get(path).shape[:2] == (533, 800) and bigger.misses == 1


def test_a_half_written_entry_is_decoded_again_and_replaced(tmp_path):
    path = _photo(tmp_path / "a.jpg")
    cache = DecodedImageCache(tmp_path / "cache", 300)
    expected = cache.get(path)
    entry = cache.entry_path(path)
    entry.write_bytes(entry.read_bytes()[:100])  # a process killed mid-write (without the rename)
    again = DecodedImageCache(tmp_path / "cache", 300)
    assert np.array_equal(again.get(path), expected) and again.misses == 1
    assert np.array_equal(np.load(entry), expected)  # repaired on disk
    np.save(entry, np.zeros((301, 2, 3), np.uint8))  # an entry no 300-px bound could have written
    third = DecodedImageCache(tmp_path / "cache", 300)
    assert np.array_equal(third.get(path), expected) and third.misses == 1


def test_a_cache_folder_that_cannot_be_written_turns_the_cache_off_with_one_warning(tmp_path):
    path = _photo(tmp_path / "a.jpg")
    (tmp_path / "blocked").write_text("a file where the cache folder should be")
    cache = DecodedImageCache(tmp_path / "blocked", 300)
    with pytest.warns(UserWarning, match="image cache .* turned off"):
        image = cache.get(path)
    assert np.array_equal(image, read_downscaled(path, 300)) and not cache.enabled
    assert np.array_equal(cache.get(path), image)  # still the right pixels, no second warning


def test_short_disk_gives_no_cache_and_a_reason_and_cached_images_need_no_space(tmp_path, monkeypatch):
    paths = [_photo(tmp_path / f"{i}.jpg", seed=i) for i in range(3)]
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(image_cache.shutil, "disk_usage",
                        lambda p: usage._replace(free=image_cache.DISK_MARGIN + 100))
    cache, why = cache_for_training(tmp_path / "proj", paths, 640)
    need = 3 * (3 * 640 * 427 + 128)
    assert cache is None and f"caching 3 images needs {need / 2**30:.1f} GiB" in why and "GiB free" in why
    monkeypatch.setattr(image_cache.shutil, "disk_usage",
                        lambda p: usage._replace(free=image_cache.DISK_MARGIN + need))
    cache, why = cache_for_training(tmp_path / "proj", paths, 640)
    assert why is None and cache.root == tmp_path / "proj" / ".dfine" / "cache" / "images" / "max640"
    for p in paths:
        cache.get(p)
    monkeypatch.setattr(image_cache.shutil, "disk_usage",
                        lambda p: usage._replace(free=image_cache.DISK_MARGIN))  # all cached: nothing more needed
    assert cache_for_training(tmp_path / "proj", paths, 640)[1] is None


def test_trainer_fills_the_project_cache_and_warns_when_the_disk_is_short(tmp_path, monkeypatch):
    from test_train_helpers import tiny_project

    from core.train.trainer import Trainer, TrainOptions

    root = tiny_project(tmp_path / "p", n_train=2, n_val=1)
    sets = ["train.cache_images=true", "train.epochs=1", "train.batch_size=2", "train.workers=0",
            "train.mosaic_prob=0", "train.device=cpu"]
    Trainer(TrainOptions(project=root, run_name="cached", overrides=sets, progress=False)).run()
    entries = list((root / ".dfine" / "cache" / "images" / "max512").rglob("*.npy"))
    assert len(entries) == 2  # the two train images (validation reads its own way)

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(image_cache.shutil, "disk_usage", lambda p: usage._replace(free=0))
    shutil.rmtree(root / ".dfine" / "cache")
    Trainer(TrainOptions(project=root, run_name="short", overrides=sets, progress=False)).run()
    events = [json.loads(line) for line in (root / "runs" / "short" / "events.jsonl").read_text().splitlines()]
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    assert any("train.cache_images is on" in w and "training without the cache" in w for w in warnings)
    assert any(e["event"] == "step" for e in events) and not (root / ".dfine" / "cache" / "images").exists()
