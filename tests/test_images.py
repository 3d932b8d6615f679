"""fer.data.images: odd and broken files generated in memory or tmp_path with PIL/numpy."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from fer.data.images import DecodeError, ImageInfo, load_rgb, probe


def encode(im: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def check_rgb(a: np.ndarray, h: int, w: int) -> None:
    assert a.shape == (h, w, 3)
    assert a.dtype == np.uint8
    assert a.flags.c_contiguous


def reason_of(data: bytes | Path, **kwargs: object) -> tuple[str, str]:
    """The DecodeError reasons of probe and load_rgb (they must agree)."""
    reasons = []
    for fn in (probe, load_rgb):
        with pytest.raises(DecodeError) as info:
            fn(data, **kwargs)
        assert str(info.value)  # a readable message
        reasons.append(info.value.reason)
    return reasons[0], reasons[1]


def test_plain_jpeg_probe_and_load() -> None:
    data = encode(Image.fromarray(noise(30, 50)), "JPEG", quality=95)
    assert probe(data) == ImageInfo(50, 30, "JPEG", "RGB", 1)
    check_rgb(load_rgb(data), 30, 50)


def test_path_and_bytes_give_the_same_pixels(tmp_path: Path) -> None:
    data = encode(Image.fromarray(noise(20, 24)), "PNG")
    (tmp_path / "a.png").write_bytes(data)
    assert np.array_equal(load_rgb(tmp_path / "a.png"), load_rgb(data))
    assert np.array_equal(load_rgb(str(tmp_path / "a.png")), load_rgb(bytearray(data)))


def test_exif_rotation_swaps_size_and_rotates_pixels() -> None:
    # Stored 40 wide x 20 high with a red left half; orientation 6 = rotate 90° clockwise
    # for display, so the red half must end up on top of a 20 wide x 40 high image.
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20] = (255, 0, 0)
    a[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.fromarray(a), "JPEG", quality=95, exif=exif.tobytes())
    info = probe(data)
    assert (info.width, info.height) == (20, 40)
    out = load_rgb(data)
    check_rgb(out, 40, 20)
    top, bottom = out[:15].reshape(-1, 3).mean(0), out[25:].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60


def test_grey_l_png() -> None:
    g = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (10, 1))
    out = load_rgb(encode(Image.fromarray(g, "L"), "PNG"))
    check_rgb(out, 10, 32)
    assert np.array_equal(out[:, :, 0], g) and np.array_equal(out[:, :, 2], g)


def test_sixteen_bit_png_is_scaled_not_white() -> None:
    g16 = np.linspace(0, 65535, 64 * 16).reshape(16, 64).astype(np.uint16)
    data = encode(Image.fromarray(g16), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    assert probe(data).mode.startswith("I")
    out = load_rgb(data)
    check_rgb(out, 16, 64)
    assert out.min() == 0 and out.max() == 255
    assert (out == 255).mean() < 0.01  # a plain convert("RGB") would be almost all white
    np.testing.assert_allclose(out[:, :, 1].astype(float), g16 / 257.0, atol=1)


def test_cmyk_jpeg() -> None:
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:] = (200, 30, 30)
    data = encode(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=95)
    assert probe(data).mode == "CMYK"
    out = load_rgb(data)
    check_rgb(out, 16, 16)
    r, g, b = out.reshape(-1, 3).mean(0)
    assert r > 150 and g < 80 and b < 80


def test_palette_png_with_transparency_composited_on_white() -> None:
    p = Image.new("P", (8, 4))
    p.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    p.paste(1, (4, 0, 8, 4))  # right half green, left half red (index 0)
    data = encode(p, "PNG", transparency=0)  # index 0 (red) fully transparent
    out = load_rgb(data)
    check_rgb(out, 4, 8)
    assert (out[:, :4] == 255).all()
    assert (out[:, 4:] == (0, 255, 0)).all()


def test_rgba_alpha_composited_not_dropped() -> None:
    a = np.zeros((2, 3, 4), np.uint8)
    a[..., 0] = 255  # red everywhere
    a[..., 3] = [[0, 128, 255], [0, 128, 255]]  # transparent, half, opaque
    out = load_rgb(encode(Image.fromarray(a, "RGBA"), "PNG"))
    check_rgb(out, 2, 3)
    assert (out[:, 0] == 255).all()  # hidden red pixel comes out white
    assert (out[:, 1] == (255, 127, 127)).all()
    assert (out[:, 2] == (255, 0, 0)).all()


def test_la_png() -> None:
    a = np.zeros((2, 2, 2), np.uint8)
    a[..., 1] = [[0, 255], [0, 255]]
    out = load_rgb(encode(Image.fromarray(a, "LA"), "PNG"))
    assert (out[:, 0] == 255).all() and (out[:, 1] == 0).all()


def test_animated_gif_first_frame() -> None:
    frames = [Image.new("RGB", (10, 6), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    info = probe(data)
    assert (info.format, info.n_frames, info.width, info.height) == ("GIF", 3, 10, 6)
    out = load_rgb(data)
    check_rgb(out, 6, 10)
    assert (out == (255, 0, 0)).all()


def crafted_png(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` but holds one tiny IDAT."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def test_decompression_bomb_header_rejected_before_decode() -> None:
    data = crafted_png(60000, 60000)  # 3.6 G pixels: decoding would need ~10 GB
    assert reason_of(data) == ("decompression_bomb", "decompression_bomb")


def test_max_pixels_is_honoured() -> None:
    data = encode(Image.fromarray(noise(100, 100)), "PNG")
    assert reason_of(data, max_pixels=9_999) == ("decompression_bomb", "decompression_bomb")
    assert probe(data, max_pixels=10_000).width == 100


def test_zero_bytes(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert reason_of(tmp_path / "empty.jpg") == ("zero_bytes", "zero_bytes")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated(fmt: str, keep: float) -> None:
    data = encode(Image.fromarray(noise(64, 64)), fmt)
    assert reason_of(data[: int(len(data) * keep)]) == ("truncated", "truncated")


def test_truncated_rejected_even_if_another_library_allows_it() -> None:
    data = encode(Image.fromarray(noise(64, 64)), "JPEG")
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        assert reason_of(data[: len(data) // 2]) == ("truncated", "truncated")
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False


def test_jpeg_padding_and_trailer_accepted() -> None:
    data = encode(Image.fromarray(noise(16, 16)), "JPEG")
    assert probe(data + b"\x00" * 16).width == 16
    # A trailer after EOI (some cameras append one) fails the fast check, then decodes fine.
    assert probe(data + b"TRAILER").width == 16
    check_rgb(load_rgb(data + b"TRAILER"), 16, 16)


def test_png_corrupt_idat_caught_by_crc() -> None:
    data = bytearray(encode(Image.fromarray(noise(32, 32)), "PNG"))
    i = data.index(b"IDAT") + 20
    data[i] ^= 0xFF
    r_probe, r_load = reason_of(bytes(data))
    assert r_probe in ("corrupt", "truncated") and r_load in ("corrupt", "truncated")


def test_text_file_named_jpg(tmp_path: Path) -> None:
    (tmp_path / "notes.jpg").write_text("not a picture\n")
    assert reason_of(tmp_path / "notes.jpg") == ("not_an_image", "not_an_image")


def test_directory_and_missing(tmp_path: Path) -> None:
    (tmp_path / "x.jpg").mkdir()
    assert reason_of(tmp_path / "x.jpg") == ("is_directory", "is_directory")
    assert reason_of(tmp_path / "nope.jpg") == ("missing", "missing")


def test_unsafe_format_refused() -> None:
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    assert reason_of(eps) == ("not_an_image", "not_an_image")


def test_probe_of_intact_jpeg_and_png_decodes_no_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = ImageFile.ImageFile.load

    def spy(self: ImageFile.ImageFile) -> object:
        calls.append(self.format)
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    for fmt in ("JPEG", "PNG"):
        probe(encode(Image.fromarray(noise(32, 32)), fmt))
    assert calls == []
    with pytest.raises(DecodeError):  # no EOI marker: a full decode decides, and fails
        probe(encode(Image.fromarray(noise(32, 32)), "JPEG")[:-2])
    assert calls == ["JPEG"]


def test_png_exif_orientation_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.fromarray(noise(10, 20)), "PNG", exif=exif.tobytes())
    assert (probe(data).width, probe(data).height) == (10, 20)
    check_rgb(load_rgb(data), 20, 10)
