"""Recipes in JPEG and WebP files: AUTOMATIC1111 (and Forge, SD.Next) keep the ``parameters`` text in the EXIF
UserComment tag (0x9286, in the Exif sub-IFD) instead of a PNG text chunk. Plain PIL: no Qt, no torch.

A UserComment is 8 bytes naming the character code, then the text (EXIF 2.3, section 4.6.5): ``ASCII``,
``UNICODE`` (UCS-2/UTF-16) or ``JIS`` padded with zero bytes to 8, or eight zero bytes (undefined).
AUTOMATIC1111 writes UNICODE as UTF-16 big-endian (``piexif.helper.UserComment.dump``) whatever the byte order
of the EXIF block; other writers follow the block's byte order. Reading honours a byte-order mark, else tells
the two apart by where the zero bytes of the (mostly Latin) text fall.
"""

from __future__ import annotations

from PIL import Image

EXIF_IFD = 0x8769  # the Exif sub-IFD, where UserComment lives
USER_COMMENT = 0x9286
ASCII, UNICODE, JIS, UNDEFINED = b"ASCII\0\0\0", b"UNICODE\0", b"JIS\0\0\0\0\0", b"\0" * 8
MAX_COMMENT = 8 * 1024 * 1024  # bytes of UserComment decoded (a recipe is a few KB; WebP EXIF has no 64 KB limit)


def user_comment(image: Image.Image) -> str:
    """The EXIF UserComment of an open image as text ("" when there is none or it cannot be read)."""
    try:
        exif = image.getexif()
        raw = exif.get_ifd(EXIF_IFD).get(USER_COMMENT)
        if raw is None:
            raw = exif.get(USER_COMMENT)  # some writers put it in IFD0
    except Exception:  # noqa: BLE001 - damaged EXIF is "no comment", never a crash while reading a recipe
        return ""
    return decode_user_comment(raw, getattr(exif, "endian", None))


def comment_from_exif(data: bytes) -> str:
    """The UserComment in a raw EXIF block (a PNG ``eXIf`` chunk) as text, "" when there is none."""
    if not data or len(data) > MAX_COMMENT:
        return ""
    try:
        exif = Image.Exif()
        exif.load(data if data.startswith(b"Exif\0\0") else b"Exif\0\0" + data)  # as PIL's PNG reader does
        raw = exif.get_ifd(EXIF_IFD).get(USER_COMMENT)
        if raw is None:
            raw = exif.get(USER_COMMENT)
    except Exception:  # noqa: BLE001 - damaged EXIF is "no comment"
        return ""
    return decode_user_comment(raw, getattr(exif, "endian", None))


def decode_user_comment(raw, endian: str | None = None) -> str:
    """The text of a UserComment value (bytes with its 8-byte code; a str from writers that typed it ASCII).
    Anything else (a number, a tuple from a damaged tag) or a value over ``MAX_COMMENT`` is no comment: "".
    Never raises."""
    if isinstance(raw, (str, bytes, bytearray, memoryview)) and len(raw) > MAX_COMMENT:
        return ""
    if isinstance(raw, str):
        return raw.removeprefix("ASCII\0\0\0").rstrip("\0").strip()
    if not isinstance(raw, (bytes, bytearray, memoryview)):  # bytes(4_000_000_000) would allocate 4 GB
        return ""
    raw = bytes(raw)
    code, body = raw[:8], raw[8:]
    if code == UNICODE:
        text = body.decode(_utf16_codec(body, endian), errors="replace")
    elif code == JIS:
        text = body.decode("shift_jis", errors="replace")
    elif code in (ASCII, UNDEFINED):
        text = body.decode("utf-8", errors="replace")
    else:  # no code at all: the whole value is the text
        text = raw.decode("utf-8", errors="replace")
    return text.lstrip("\ufeff").rstrip("\0").strip()


def encode_user_comment(text: str) -> bytes:
    """UNICODE code + UTF-16 big-endian, as AUTOMATIC1111 writes it."""
    return UNICODE + text.encode("utf-16-be")


def exif_with_comment(text: str) -> Image.Exif:
    """An Exif block holding ``text`` as UserComment: ``image.save(path, exif=exif_with_comment(text))``."""
    exif = Image.Exif()
    exif.get_ifd(EXIF_IFD)[USER_COMMENT] = encode_user_comment(text)
    return exif


def _utf16_codec(body: bytes, endian: str | None) -> str:
    if len(body) % 2:
        body = body[:-1]
    if body[:2] == b"\xfe\xff":
        return "utf-16-be"
    if body[:2] == b"\xff\xfe":
        return "utf-16-le"
    even = body[0::2].count(0)  # zero high bytes come first in big-endian Latin text
    odd = body[1::2].count(0)
    if even != odd:
        return "utf-16-be" if even > odd else "utf-16-le"
    return "utf-16-le" if endian == "<" else "utf-16-be"
