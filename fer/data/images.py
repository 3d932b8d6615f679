"""Safe image decoding: any odd or hostile file in, 8-bit RGB out, or a :class:`DecodeError`.

Every stage that opens an image goes through here, so all of them agree on what a valid image
is: EXIF orientation applied; grey, 16-bit, CMYK, palette, alpha and animated images normalised
to HxWx3 uint8 RGB (first frame, alpha composited on white); decompression bombs rejected from
the header before any pixel buffer is allocated; truncated files rejected.

:func:`probe` is the cheap variant used by ingest: a header read plus structural checks that
catch truncation without decoding pixels where the format allows it (JPEG, PNG).
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from PIL import Image as PILImage

DEFAULT_MAX_PIXELS = 89_478_485  # PIL's own default (Image.MAX_IMAGE_PIXELS)

# Formats we let PIL identify. Others (EPS and PDF call Ghostscript, ICNS, FITS, ...) are
# refused as not_an_image: they are not photos, and each plugin is extra attack surface.
SAFE_FORMATS: tuple[str, ...] = (
    "JPEG",
    "MPO",
    "PNG",
    "GIF",
    "BMP",
    "TIFF",
    "WEBP",
    "PPM",
    "AVIF",
)

# Orientations (EXIF tag 0x0112) that rotate by 90° and so swap width and height.
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_LATE_META = frozenset({b"eXIf", b"iTXt", b"tEXt", b"zTXt"})
# im.info keys that can carry an orientation (EXIF, or XMP's tiff:Orientation).
_ORIENTATION_KEYS = ("exif", "xmp", "XML:com.adobe.xmp", "Raw profile type exif")

Source = str | os.PathLike | bytes | bytearray | memoryview


class DecodeError(Exception):
    """An image that cannot be used, with a short machine-readable ``reason``.

    Reasons: ``zero_bytes``, ``truncated``, ``corrupt``, ``not_an_image``,
    ``decompression_bomb``, ``unsupported_mode``, ``unreadable``, ``is_directory``,
    ``missing``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`probe` learns: size after EXIF orientation, PIL format and mode, frames."""

    width: int
    height: int
    format: str
    mode: str
    n_frames: int


def load_rgb(source: Source, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image file or its bytes into an HxWx3 uint8 RGB, C-contiguous array.

    Raises:
        DecodeError: the only exception; ``reason`` says why.
    """
    data, name = _read(source)
    im = _open(data, name, max_pixels)
    try:
        _load(im, name)
        upright = _oriented(im)
        try:
            return _to_rgb(upright, name)
        finally:
            upright.close()
    finally:
        im.close()


def probe(source: Source, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Validate an image cheaply and describe it, without decoding pixels where possible.

    JPEG must end with the EOI marker (trailing zero padding allowed) and PNG's chunk chain
    must be complete with valid CRCs up to IEND; when that fast check passes no pixel is
    decoded. Other formats, and JPEG/PNG files failing the fast check (a trailer after EOI,
    say), get a full decode. So ``probe`` rejects what :func:`load_rgb` rejects for
    truncation, size, format and mode; what it cannot see without decoding is corruption
    inside intact JPEG entropy data (which libjpeg mostly tolerates with a warning anyway).

    Raises:
        DecodeError: the only exception; ``reason`` says why.
    """
    data, name = _read(source)
    im = _open(data, name, max_pixels)
    try:
        fmt = im.format or ""
        if fmt in ("JPEG", "MPO"):
            fast = _jpeg_complete(data)
        elif fmt == "PNG":
            fast = _png_complete(data)
        else:
            fast = False
        if not fast:
            _load(im, name)
        _check_mode(im, name)
        orientation = _orientation(im)
        width, height = im.size
        if orientation in _SWAPPING_ORIENTATIONS:
            width, height = height, width
        return ImageInfo(width, height, fmt, im.mode, _n_frames(im))
    finally:
        im.close()


def preload() -> None:
    """Import PIL and register its plugins now (before forking workers, say)."""
    _pil()


# --- reading and opening -------------------------------------------------------------------


def _read(source: Source) -> tuple[bytes | memoryview, str]:
    """The file's bytes (read once) and a name for messages."""
    if isinstance(source, bytes | bytearray | memoryview):
        data = source if isinstance(source, bytes) else memoryview(source).cast("B")
        name = "<bytes>"
    else:
        name = os.fspath(source)
        try:
            with open(name, "rb") as fh:
                data = fh.read()
        except IsADirectoryError:
            raise DecodeError("is_directory", f"{name}: is a directory") from None
        except FileNotFoundError:
            raise DecodeError("missing", f"{name}: file not found") from None
        except OSError as exc:
            raise DecodeError("unreadable", f"{name}: cannot read ({exc.strerror})") from None
    if len(data) == 0:
        raise DecodeError("zero_bytes", f"{name}: empty file (0 bytes)")
    return data, name


_formats: tuple[str, ...] = ()


def _pil() -> tuple[Any, Any]:
    global _formats
    from PIL import Image, ImageFile

    if not _formats:
        # With an explicit format list PIL does not register its plugins itself.
        Image.init()
        _formats = tuple(f for f in SAFE_FORMATS if f in Image.OPEN)

    # A library imported elsewhere may have flipped this to True; then PIL would silently
    # grey-fill truncated files instead of raising. Keep PIL's safe default.
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    return Image, ImageFile


def _open(data: bytes | memoryview, name: str, max_pixels: int) -> PILImage.Image:
    """Parse the header only, and refuse oversized images before any pixel allocation."""
    Image, _ = _pil()
    try:
        im = Image.open(io.BytesIO(data), formats=_formats)
    except Image.DecompressionBombError as exc:
        raise DecodeError("decompression_bomb", f"{name}: {exc}") from None
    except Image.UnidentifiedImageError:
        raise DecodeError(
            "not_an_image", f"{name}: not an image (or an unsupported format)"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError) as exc:
        # The format was recognised but its header is broken.
        reason = "truncated" if _is_truncation(exc) else "corrupt"
        raise DecodeError(reason, f"{name}: bad image header ({exc})") from None
    width, height = im.size
    if width <= 0 or height <= 0:
        im.close()
        raise DecodeError("corrupt", f"{name}: header claims an empty image {width}x{height}")
    if width * height > max_pixels:
        im.close()
        raise DecodeError(
            "decompression_bomb",
            f"{name}: {width}x{height} = {width * height} pixels exceeds max_pixels {max_pixels}",
        )
    return im


def _load(im: PILImage.Image, name: str) -> None:
    """Decode the first frame; PIL raises here on truncated or corrupt pixel data."""
    Image, _ = _pil()
    try:
        im.seek(0)
        im.load()
    except Image.DecompressionBombError as exc:
        raise DecodeError("decompression_bomb", f"{name}: {exc}") from None
    except MemoryError:
        raise DecodeError("decompression_bomb", f"{name}: out of memory decoding") from None
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, zlib.error, ...
        reason = "truncated" if _is_truncation(exc) else "corrupt"
        raise DecodeError(reason, f"{name}: cannot decode ({exc})") from None


def _is_truncation(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, EOFError) or any(
        s in text for s in ("truncated", "end of file", "premature end", "unexpected end")
    )


# --- structural checks (no pixel decode) ---------------------------------------------------


def _jpeg_complete(data: bytes | memoryview) -> bool:
    """True when the bytes end with the EOI marker, ignoring trailing zero padding."""
    end = len(data)
    # Scan back over padding without copying the whole buffer.
    while end > 0 and data[end - 1] == 0:
        end -= 1
    return end >= 4 and bytes(data[end - 2 : end]) == b"\xff\xd9"


def _png_complete(data: bytes | memoryview) -> bool:
    """True when the chunk chain is intact (CRCs valid) through IEND, with no late metadata.

    Metadata chunks after the image data (EXIF, XMP) would be missed by a header-only read,
    so they answer False, which makes :func:`probe` decode fully and see them, as load does.
    """
    view = memoryview(data)
    if bytes(view[:8]) != _PNG_SIGNATURE:
        return False
    pos, n, seen_idat = 8, len(view), False
    while pos + 12 <= n:
        length, ctype = struct.unpack(">I4s", view[pos : pos + 8])
        end = pos + 12 + length
        if end > n:
            return False
        body = view[pos + 4 : pos + 8 + length]
        (crc,) = struct.unpack(">I", view[pos + 8 + length : end])
        if zlib.crc32(body) != crc:
            return False
        if ctype == b"IEND":
            return True
        if ctype == b"IDAT":
            seen_idat = True
        elif ctype == b"eXIf" or (seen_idat and ctype in _PNG_LATE_META):
            return False
        pos = end
    return False


# --- metadata --------------------------------------------------------------------------------


def _orientation(im: PILImage.Image) -> int:
    """EXIF orientation (1..8); 1 when absent or unreadable (as :func:`_oriented` does)."""
    if im.format in ("JPEG", "MPO", "PNG") and not any(k in im.info for k in _ORIENTATION_KEYS):
        # No EXIF/XMP block: nothing can rotate it. Also, PNG's getexif() would decode the
        # whole image to look for a late eXIf chunk, which the fast path has ruled out.
        return 1
    try:
        value = im.getexif().get(0x0112, 1)
        return int(value) if int(value) in range(1, 9) else 1
    except Exception:  # malformed EXIF must not reject an otherwise good photo
        return 1


def _oriented(im: PILImage.Image) -> PILImage.Image:
    from PIL import ImageOps

    if _orientation(im) == 1:
        return im
    try:
        out = ImageOps.exif_transpose(im)
    except Exception:  # malformed EXIF: keep the stored orientation, as probe reports
        return im
    return out if out is not None else im


def _n_frames(im: PILImage.Image) -> int:
    try:
        return max(1, int(getattr(im, "n_frames", 1)))
    except Exception:  # a damaged later frame does not matter: we only use the first
        return 1


# --- mode normalisation ----------------------------------------------------------------------

_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_WITH_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")
_CONVERTIBLE = ("1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr")
SUPPORTED_MODES: tuple[str, ...] = (*_SIXTEEN_BIT, *_WITH_ALPHA, *_CONVERTIBLE, "F")


def _check_mode(im: PILImage.Image, name: str) -> None:
    if im.mode not in SUPPORTED_MODES:
        raise DecodeError("unsupported_mode", f"{name}: unsupported image mode {im.mode!r}")


def _to_rgb(im: PILImage.Image, name: str) -> np.ndarray:
    """Normalise any supported mode to HxWx3 uint8 RGB."""
    _check_mode(im, name)
    mode = im.mode
    try:
        if mode in _SIXTEEN_BIT or mode == "F":
            grey = _scale_to_uint8(np.asarray(im), mode)
            return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
        has_alpha = mode in _WITH_ALPHA or "transparency" in im.info
        if has_alpha:
            rgba = np.asarray(im.convert("RGBA"), dtype=np.uint16)
            return _composite_on_white(rgba)
        return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))
    except DecodeError:
        raise
    except Exception as exc:  # e.g. a palette that does not convert
        raise DecodeError("unsupported_mode", f"{name}: cannot convert {mode} ({exc})") from None


def _scale_to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    """Map 16-bit (or 32-bit int / float) grey to 0..255 by scaling, never by clipping.

    A plain PIL ``convert("L")`` clips values above 255, which turns a 16-bit image white.
    """
    if mode == "F":
        a = a.astype(np.float64)
        finite = a[np.isfinite(a)]
        top = 1.0 if finite.size and finite.max() <= 1.0 else 255.0
        scaled = np.nan_to_num(a, nan=0.0, posinf=top, neginf=0.0) / top * 255.0
        return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    # 16-bit data (the "I" mode PNG decoders use holds 0..65535 too); 65535 / 257 = 255.
    a = np.clip(a.astype(np.int64), 0, 65535)
    return ((a + 128) // 257).astype(np.uint8)


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """Blend over a white background: a fully transparent pixel becomes white, whatever
    colour it stores (dropping alpha would reveal hidden pixels)."""
    rgb, alpha = rgba[:, :, :3], rgba[:, :, 3:4]
    out = (rgb * alpha + 255 * (255 - alpha) + 127) // 255
    return np.ascontiguousarray(out.astype(np.uint8))
