"""The text an image file carries, read with bounded time and memory whatever the file holds. Plain PIL: no Qt,
no torch.

A recipe reader meets files from everywhere (image sites, other tools, a hostile sender), so every step here is
linear in the file and capped:

- only regular files are opened (a named pipe called ``x.png`` would block the reader forever);
- PNG text chunks (``tEXt``, ``zTXt``, ``iTXt``) are read by walking the chunk list ourselves, skipping the pixel
  data: a PNG declaring a huge size is never decoded, wherever its text chunks lie (PIL decodes the whole image
  to reach chunks after the pixels), and a compressed chunk is inflated only up to ``MAX_TEXT`` (a zTXt "bomb"
  that expands to gigabytes is reported, not expanded);
- JPEG and WebP go through PIL for their EXIF UserComment (and XMP, under the PNG chunk's name), with PIL's
  warnings kept off stderr and its decompression-bomb error turned into a readable refusal;
- the A1111 "stealth" metadata (text hidden in the least significant bits of the alpha channel, or of the RGB
  channels) is decoded only for images up to ``MAX_STEALTH_PIXELS`` and payloads up to ``MAX_TEXT``.

Everything that goes wrong raises ``Unreadable`` (a ValueError) with a message naming the problem; the parts that
could not be read but did not stop the rest are returned as notes.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

MAX_TEXT = 8 * 1024 * 1024  # one text chunk (or stealth payload) decompressed: a big ComfyUI workflow is ~1 MB
MAX_TOTAL_TEXT = 32 * 1024 * 1024  # all text chunks of one file together
MAX_CHUNKS = 200_000  # a real PNG has at most a few thousand chunks (pixel data split in 8-64 KB pieces)
MAX_STEALTH_PIXELS = 4096 * 4096  # the alpha-channel metadata is read from images up to this size only
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STEALTH_ALPHA = {b"stealth_pnginfo": False, b"stealth_pngcomp": True}  # signature -> gzip-compressed payload
STEALTH_RGB = {b"stealth_rgbinfo": False, b"stealth_rgbcomp": True}
XMP_KEY = "XML:com.adobe.xmp"  # a PNG's XMP chunk; a JPEG's or WebP's XMP is given under the same name
_LSB = bytes(0x30 + (value & 1) for value in range(256))  # byte -> b"0" / b"1" of its least significant bit


class Unreadable(ValueError):
    """The file cannot be read as an image (the message says why)."""


@dataclass
class ImageText:
    """What a file says about itself: its format, size, text entries (PNG chunks, or ``parameters`` from a
    JPEG/WebP EXIF UserComment) and notes about parts that were skipped."""

    format: str
    width: int = 0
    height: int = 0
    chunks: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    has_alpha: bool = False


def open_regular(path: Path):
    """``path`` opened for reading as bytes, only when it is a regular file (never blocks on a pipe or device)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise Unreadable("no such file") from None
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte, no permission
        raise Unreadable(f"cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise Unreadable("is a folder, not an image")
    if not stat.S_ISREG(info.st_mode):
        raise Unreadable("is not a regular file (a pipe, socket or device); refusing to read it")
    try:  # O_NONBLOCK: if the name was swapped for a pipe since the stat, the open still returns at once
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise Unreadable(f"cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise Unreadable("is not a regular file (a pipe, socket or device); refusing to read it")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_image_text(path: Path) -> ImageText:
    """The text entries of the image at ``path``. Raises ``Unreadable``."""
    with open_regular(Path(path)) as stream:
        try:
            head = stream.read(8)
            if head == PNG_SIGNATURE:
                return _png_text(stream)
            stream.seek(0)
            return _pil_text(stream)
        except OSError as exc:
            raise Unreadable(f"cannot be read ({exc.strerror or exc})") from None


# ---- PNG: the chunk list, walked by hand ----------------------------------------------------------------


def _png_text(stream) -> ImageText:
    found = ImageText("PNG")
    total, exif = 0, b""
    for count in range(MAX_CHUNKS + 1):
        head = stream.read(8)
        if len(head) < 8:
            break
        length, kind = struct.unpack(">I4s", head)
        if length > 0x7FFFFFFF:  # the PNG limit: anything above is damage, and nothing after it can be trusted
            found.notes.append("the file is damaged after its first chunks")
            break
        if kind == b"IHDR" and length >= 13:
            data = stream.read(length)
            found.width, found.height = struct.unpack(">II", data[:8])
            found.has_alpha = len(data) > 9 and data[9] in (4, 6)  # grey + alpha, RGB + alpha
        elif kind in (b"tEXt", b"zTXt", b"iTXt"):
            if length > MAX_TEXT + 1024 or total + length > MAX_TOTAL_TEXT:
                found.notes.append(f"a {kind.decode()} chunk of {length:,} bytes was too large to read")
                stream.seek(length, os.SEEK_CUR)
            else:
                data = stream.read(length)
                if len(data) < length:
                    found.notes.append("the file is cut short")
                    break
                try:
                    key, text = _decode_text_chunk(kind, data)
                except _Skip as skip:
                    found.notes.append(str(skip))
                else:
                    total += len(text)
                    if total > MAX_TOTAL_TEXT:
                        found.notes.append(f"the text chunk {key!r} was skipped: the text chunks together "
                                           f"hold more than {MAX_TOTAL_TEXT // 2**20} MiB")
                    else:
                        found.chunks[key] = text
        elif kind == b"eXIf" and length <= MAX_TEXT:  # A1111's text may sit in the EXIF UserComment
            exif = stream.read(length)
        elif kind == b"IEND":
            break
        else:
            stream.seek(length, os.SEEK_CUR)
        stream.seek(4, os.SEEK_CUR)  # the CRC: a damaged checksum does not stop us reading the text
        if count == MAX_CHUNKS:
            found.notes.append(f"the file has more than {MAX_CHUNKS:,} chunks; the rest was not read")
    if exif and not found.chunks.get("parameters"):
        from desktop_app.studio.exif_recipe import comment_from_exif

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            comment = comment_from_exif(exif)
        if comment:
            found.chunks["parameters"] = comment
    return found


class _Skip(Exception):
    """One text chunk that cannot be used (damaged, or expanding beyond the limit)."""


def _decode_text_chunk(kind: bytes, data: bytes) -> tuple[str, str]:
    key, sep, rest = data.partition(b"\0")
    if not sep or not 1 <= len(key) <= 79:
        raise _Skip(f"a damaged {kind.decode()} chunk was skipped")
    name = key.decode("latin-1")
    if kind == b"tEXt":
        return name, rest.decode("latin-1")
    if kind == b"zTXt":
        if not rest or rest[0] != 0:
            raise _Skip(f"the text chunk {name!r} uses an unknown compression and was skipped")
        return name, _inflate(name, rest[1:]).decode("latin-1")
    # iTXt: compression flag, method, language tag \0, translated keyword \0, UTF-8 text
    if len(rest) < 2:
        raise _Skip(f"a damaged iTXt chunk {name!r} was skipped")
    compressed, method, rest = rest[0], rest[1], rest[2:]
    _language, sep1, rest = rest.partition(b"\0")
    _translated, sep2, text = rest.partition(b"\0")
    if not (sep1 and sep2):
        raise _Skip(f"a damaged iTXt chunk {name!r} was skipped")
    if compressed:
        if method != 0:
            raise _Skip(f"the text chunk {name!r} uses an unknown compression and was skipped")
        text = _inflate(name, text)
    return name, text.decode("utf-8", errors="replace")


def _inflate(name: str, data: bytes, limit: int = MAX_TEXT) -> bytes:
    """zlib data expanded to at most ``limit`` bytes: memory stays bounded whatever the data claims."""
    try:
        inflater = zlib.decompressobj()
        out = inflater.decompress(data, limit + 1)
    except zlib.error:
        raise _Skip(f"the compressed text chunk {name!r} is damaged and was skipped") from None
    if len(out) > limit:
        raise _Skip(f"the compressed text chunk {name!r} expands to more than {limit // 2**20} MiB "
                    "(a decompression bomb?) and was not read")
    return out


# ---- JPEG, WebP and the rest: PIL, for the EXIF UserComment ---------------------------------------------


def _pil_text(stream) -> ImageText:
    from desktop_app.studio.exif_recipe import user_comment

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL's warnings (bomb, damaged EXIF) would add lines to stderr
        try:
            with Image.open(stream) as image:
                found = ImageText(image.format or "image", image.width, image.height)
                for key, value in (image.info or {}).items():
                    if isinstance(key, str) and isinstance(value, str) and len(value) <= MAX_TEXT:
                        found.chunks[key] = value
                xmp = (image.info or {}).get("xmp")  # JPEG APP1, WebP XMP chunk: bytes (a PNG's is an iTXt chunk)
                if isinstance(xmp, bytes) and len(xmp) <= MAX_TEXT:
                    found.chunks.setdefault(XMP_KEY, xmp.decode("utf-8", errors="replace"))
                comment = user_comment(image)
                if comment:
                    found.chunks["parameters"] = comment
                return found
        except Image.DecompressionBombError as exc:
            raise Unreadable(f"declares an image too large to open safely ({exc})") from None
        except UnidentifiedImageError:
            raise Unreadable("not an image this app can read") from None
        except OSError as exc:
            raise Unreadable(f"cannot be read ({exc.strerror or exc})") from None
        except (ValueError, SyntaxError, struct.error, EOFError, MemoryError, RecursionError) as exc:
            raise Unreadable(f"is a damaged image ({type(exc).__name__})") from None


# ---- A1111 "stealth" metadata: text in the lowest bits of the pixels ------------------------------------


def stealth_text(path: Path, found: ImageText) -> str | None:
    """The text hidden in the pixels' least significant bits (the sd-webui stealth-pnginfo extension, also
    written by NovelAI), or None. Bits are read column by column (x outer, y inner) as the extension writes
    them: a 15-byte signature, a 32-bit payload length in bits, the payload (gzip when the signature ends in
    ``comp``). Bounded: images up to ``MAX_STEALTH_PIXELS``, payloads up to ``MAX_TEXT``."""
    if found.format != "PNG" or not found.width or not found.height:
        return None
    if found.width * found.height > MAX_STEALTH_PIXELS:
        found.notes.append(f"none in its text, and at {found.width}x{found.height} pixels it is too large to "
                           "look for one hidden in its pixels")
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with open_regular(Path(path)) as stream, Image.open(stream) as image:
                if image.size != (found.width, found.height):
                    return None
                image.load()
                if image.mode == "RGBA":  # the extension writes RGBA (alpha bits) and RGB (colour bits) only
                    text = _stealth_from(image.getchannel("A"), STEALTH_ALPHA, found)
                    if text is not None:
                        return text
                    return _stealth_from(image.convert("RGB"), STEALTH_RGB, found)
                if image.mode == "RGB":
                    return _stealth_from(image, STEALTH_RGB, found)
        except (Unreadable, OSError, ValueError, SyntaxError, struct.error, EOFError, MemoryError):
            return None
    return None


def _stealth_from(plane: Image.Image, signatures: dict[bytes, bool], found: ImageText) -> str | None:
    # column-major bytes: transposing makes rows of columns; each byte gives one bit (per channel for RGB)
    data = plane.transpose(Image.Transpose.TRANSPOSE).tobytes()
    sign_bits, length_bits = 15 * 8, 32
    if len(data) < sign_bits + length_bits:
        return None
    signature = _bits_to_bytes(data[:sign_bits])
    if signature not in signatures:
        return None
    length = int(data[sign_bits:sign_bits + length_bits].translate(_LSB), 2)
    start = sign_bits + length_bits
    if length == 0 or length % 8 or length > 8 * MAX_TEXT or start + length > len(data):
        found.notes.append("the metadata hidden in the pixels is damaged")
        return None
    payload = _bits_to_bytes(data[start:start + length])
    if signatures[signature]:
        try:
            payload = _gunzip(payload)
        except _Skip as skip:
            found.notes.append(str(skip))
            return None
    return payload.decode("utf-8", errors="replace")


def _bits_to_bytes(data: bytes) -> bytes:
    bits = data.translate(_LSB)
    return int(bits, 2).to_bytes(len(bits) // 8, "big")  # int() of a base-2 text is linear in its length


def _gunzip(data: bytes, limit: int = MAX_TEXT) -> bytes:
    try:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip framing
        out = inflater.decompress(data, limit + 1)
    except zlib.error:
        try:  # a raw gzip stream with extras zlib does not take: the standard reader, still bounded
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as reader:
                out = reader.read(limit + 1)
        except (OSError, EOFError, zlib.error):
            raise _Skip("the compressed metadata hidden in the pixels is damaged") from None
    if len(out) > limit:
        raise _Skip(f"the metadata hidden in the pixels expands to more than {limit // 2**20} MiB and was not "
                    "read")
    return out
