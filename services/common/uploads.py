"""Uploaded files: checked by content, cleaned, stored by hash, served with safe headers.

Citizens' photos (intake) and departments' attachments (dispatch) go through the same steps
(docs/uploads.md):

1. ``read_uploads`` takes the form's files; a form with too many files, or one file too big,
   empty, of a type the form does not take, or not decodable, is refused as a whole with a
   Chinese message (``UploadRejected``) *before anything is written*.
2. The type comes from the bytes (magic numbers), never from the name or the declared type;
   images are then decoded for real with Pillow and re-encoded, which drops EXIF (GPS!),
   comments and anything appended to the pixels (polyglots); PDFs are parsed with pypdf and
   refused if encrypted or carrying scripts, launch actions or embedded files.
3. ``store_uploads`` writes the cleaned bytes (and a thumbnail per image) to the blob store
   and returns references ``{sha256, content_type, size, filename, thumbnail_sha256}`` for
   the case record and the bus.
4. ``send_blob`` serves a blob that the caller has checked the viewer may see, with the type
   sniffed again from the stored bytes, ``nosniff``, a sandboxing CSP and an RFC 5987 name.

``init_app`` sets the request body limit (Flask's MAX_CONTENT_LENGTH), so a huge body is
refused with 413 before it is parsed.
"""
from __future__ import annotations

import io
import re
import unicodedata
from dataclasses import dataclass

from flask import jsonify, render_template, request, send_file
from PIL import Image, ImageOps, UnidentifiedImageError
from pypdf import PdfReader
from pypdf.errors import PdfReadError
from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject
from werkzeug.exceptions import NotFound

from .blobs import BlobNotFound, BlobStore

JPEG, PNG, WEBP, PDF = "image/jpeg", "image/png", "image/webp", "application/pdf"
IMAGE_TYPES = (JPEG, PNG, WEBP)
EXTENSIONS = {JPEG: "jpg", PNG: "png", WEBP: "webp", PDF: "pdf"}
PILLOW_FORMATS = {JPEG: "JPEG", PNG: "PNG", WEBP: "WEBP"}
TYPE_NAMES = {JPEG: "JPEG", PNG: "PNG", WEBP: "WebP", PDF: "PDF"}

# A phone photo is 12-50 megapixels; more than this is a decompression bomb, not a photo.
MAX_PIXELS = 50_000_000
# Stored photos are scaled down to this longest side: plenty to read a meter or a crack.
MAX_SIDE = 2560
THUMBNAIL_SIDE = 320
# Room for the text fields of a form that also carries the maximum of files.
FORM_ALLOWANCE = 1024 * 1024
# PDF dictionary keys that run code or carry other files (checked on every object).
PDF_ACTIVE_KEYS = {"/JS", "/JavaScript", "/Launch", "/EmbeddedFile", "/EmbeddedFiles", "/RichMedia",
                   "/XFA", "/SubmitForm", "/ImportData"}
MAX_FILENAME = 80


class UploadRejected(ValueError):
    """A file (or the set of files) that cannot be taken; the message is for the citizen."""


@dataclass(frozen=True)
class Policy:
    noun: str          # 照片 / 附件, in messages
    types: tuple       # accepted content types
    max_bytes: int     # per file
    max_count: int     # per form


@dataclass(frozen=True)
class Prepared:
    """A checked file, ready to store: the cleaned bytes, never the upload as sent."""
    data: bytes
    content_type: str
    filename: str
    thumbnail: bytes | None = None


def photo_policy(settings) -> Policy:
    return Policy("照片", IMAGE_TYPES, settings.upload_photo_max_bytes, settings.upload_max_photos)


def attachment_policy(settings) -> Policy:
    return Policy("附件", (*IMAGE_TYPES, PDF), settings.upload_attachment_max_bytes,
                  settings.upload_max_attachments)


def request_limit(settings) -> int:
    """The largest request body a form with files may send (MAX_CONTENT_LENGTH)."""
    return max(settings.upload_photo_max_bytes * settings.upload_max_photos,
               settings.upload_attachment_max_bytes * settings.upload_max_attachments) + FORM_ALLOWANCE


def megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):g} MB"


# -- what a file is ------------------------------------------------------------------------

def sniff(head: bytes) -> str | None:
    """The content type from the first bytes, or None if it is none we take."""
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if head.startswith(b"%PDF-"):
        return PDF
    return None


_UNSAFE_NAME_CHARS = re.compile(r'[<>:"/\\|?*]')


def display_filename(name: str | None, content_type: str, default: str = "文件") -> str:
    """A name to show and to offer on download; never used as a path. Keeps the last path
    segment (POSIX or Windows), drops control, format (bidi) and reserved characters, and
    takes the extension of the real type: ``../../etc/passwd`` → ``passwd.jpg``."""
    name = unicodedata.normalize("NFC", name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] not in "CZ" or c == " ")
    name = _UNSAFE_NAME_CHARS.sub("", name)
    stem = name.rsplit(".", 1)[0] if "." in name.strip(".") else name
    stem = stem.strip(" .")[:MAX_FILENAME].strip(" .") or default
    return f"{stem}.{EXTENSIONS[content_type]}"


# -- checking and cleaning -------------------------------------------------------------------

def prepare(filename: str | None, data: bytes, policy: Policy) -> Prepared:
    """Check one file against ``policy`` and clean it; raises UploadRejected."""
    shown = display_filename(filename, JPEG, policy.noun).rsplit(".", 1)[0]
    if not data:
        raise UploadRejected(f"{policy.noun}“{shown}”是空文件")
    if len(data) > policy.max_bytes:
        raise UploadRejected(f"{policy.noun}“{shown}”超过 {megabytes(policy.max_bytes)}，请压缩后重新上传")
    content_type = sniff(data[:16])
    if content_type not in policy.types:
        accepted = "、".join(TYPE_NAMES[t] for t in policy.types)
        raise UploadRejected(f"“{shown}”不是可接受的{policy.noun}格式（仅支持 {accepted}）")
    name = display_filename(filename, content_type, policy.noun)
    if content_type == PDF:
        check_pdf(data, shown)
        return Prepared(data, PDF, name)
    cleaned, thumbnail = clean_image(data, content_type, shown)
    return Prepared(cleaned, content_type, name, thumbnail)


def clean_image(data: bytes, content_type: str, shown: str) -> tuple[bytes, bytes]:
    """Decode the whole image (a truncated or fake one fails here), turn it upright, and
    re-encode only its pixels: EXIF, XMP, comments and trailing bytes do not survive.
    Returns (image, JPEG thumbnail)."""
    fmt = PILLOW_FORMATS[content_type]
    too_big = UploadRejected(f"图片“{shown}”的像素过多，请缩小后重新上传")
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as image:
            if image.width * image.height > MAX_PIXELS:
                raise too_big
            if fmt == "JPEG":
                image.draft("RGB", (MAX_SIDE, MAX_SIDE))  # decode at a reduced scale: faster, less memory
            image.load()
            upright = ImageOps.exif_transpose(image)  # a copy, turned as the camera said
    except UploadRejected:
        raise
    except Image.DecompressionBombError:
        raise too_big from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise UploadRejected(f"“{shown}”无法识别为完整的图片，可能已损坏，请换一张") from None
    upright.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BICUBIC)  # half Lanczos' time
    # Nothing of the original's metadata is written back but the colour profile (so colours
    # stay right) and a palette's transparent colour.
    colours = upright.info.get("icc_profile")
    upright.info = {k: v for k, v in upright.info.items() if k == "transparency"}
    return _encode(upright, fmt, colours), _thumbnail(upright)


def _encode(image: Image.Image, fmt: str, icc_profile: bytes | None) -> bytes:
    out, extra = io.BytesIO(), ({"icc_profile": icc_profile} if icc_profile else {})
    if fmt == "JPEG":
        image = image if image.mode in ("L", "RGB") else image.convert("RGB")
        image.save(out, "JPEG", quality=85, **extra)
    elif fmt == "WEBP":
        image = image if image.mode in ("RGB", "RGBA") else image.convert(
            "RGBA" if image.has_transparency_data else "RGB")
        image.save(out, "WEBP", quality=85, **extra)
    else:
        image.save(out, "PNG", optimize=True, **extra)
    return out.getvalue()


def _thumbnail(image: Image.Image) -> bytes:
    small = image.copy()
    small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    if small.mode.startswith("I"):  # 16-bit greyscale PNG
        small = small.point(lambda v: v / 256).convert("L")
    if small.mode not in ("RGB", "L"):
        rgba = small.convert("RGBA")
        small = Image.new("RGB", rgba.size, "white")
        small.paste(rgba, mask=rgba.getchannel("A"))
    out = io.BytesIO()
    small.save(out, "JPEG", quality=80)
    return out.getvalue()


def check_pdf(data: bytes, shown: str) -> None:
    """Parse the PDF (every object, compressed ones too) and refuse what could act on the
    reader's machine: encryption hides the content from this check, scripts and launch
    actions run code, embedded files carry other files."""
    unreadable = UploadRejected(f"“{shown}”不是完整有效的 PDF 文件")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            raise UploadRejected(f"“{shown}”是加密的 PDF，请去除密码后重新上传")
        if len(reader.pages) == 0:
            raise unreadable
        for number, generation in _pdf_object_ids(reader):
            if _has_active_key(reader.get_object(IndirectObject(number, generation, reader))):
                raise UploadRejected(f"“{shown}”含有脚本、外部程序或嵌入文件，出于安全原因不能上传")
    except UploadRejected:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, RecursionError, OSError):
        raise unreadable from None


def _has_active_key(obj, depth=0) -> bool:
    """Whether a dictionary or array, or one nested directly inside it, has an active key
    (indirect references are objects of their own, checked on their own)."""
    if depth > 50:
        return True  # nesting no honest document has
    if isinstance(obj, DictionaryObject):
        if PDF_ACTIVE_KEYS & set(obj.keys()):
            return True
        children = obj.values()
    elif isinstance(obj, ArrayObject):
        children = obj
    else:
        return False
    return any(_has_active_key(child, depth + 1) for child in children
               if not isinstance(child, IndirectObject))


def _pdf_object_ids(reader):
    for generation, numbers in reader.xref.items():
        for number in numbers:
            yield number, generation
    for number in reader.xref_objStm:
        yield number, 0


def read_uploads(files, policy: Policy) -> list[Prepared]:
    """Check every file of a form field (werkzeug FileStorage list) before anything is
    stored. The empty part a browser sends when no file was chosen is skipped."""
    chosen = [f for f in files if f and (f.filename or f.content_length)]
    if len(chosen) > policy.max_count:
        raise UploadRejected(f"最多上传 {policy.max_count} 个{policy.noun}")
    prepared = []
    for upload in chosen:
        data = upload.stream.read(policy.max_bytes + 1)  # no more than the limit is read
        prepared.append(prepare(upload.filename, data, policy))
    return prepared


def store_uploads(store: BlobStore, prepared: list[Prepared]) -> list[dict]:
    """Write checked files (and their thumbnails) to the blob store; the references.

    A submission that fails after this (say, its transaction) leaves unreferenced blobs:
    harmless, never served (only referenced blobs are), and the same file stored again
    reuses them."""
    refs = []
    for item in prepared:
        refs.append({"sha256": store.put(item.data), "content_type": item.content_type,
                     "size": len(item.data), "filename": item.filename,
                     "thumbnail_sha256": store.put(item.thumbnail) if item.thumbnail else None})
    return refs


# -- serving -----------------------------------------------------------------------------

def send_blob(store: BlobStore, key: str, filename: str):
    """The blob as a response. The caller has checked that the viewer may see it (the case
    references it and is in the viewer's scope). The type is sniffed from the stored bytes:
    only the types we take are served, images inline and PDFs as downloads."""
    try:
        content_type = sniff(store.head(key, 16))
        path = store.path(key)
    except BlobNotFound:
        content_type, path = None, None
    if content_type is None or path is None or not path.is_file():
        raise NotFound()
    inline = content_type in IMAGE_TYPES
    response = send_file(path, mimetype=content_type, as_attachment=not inline,
                         download_name=display_filename(filename, content_type),
                         etag=key, conditional=True, max_age=None)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "sandbox"
    response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
    # Personal data: a browser may keep it but must ask again (the scope check runs, an
    # unchanged blob answers 304); shared caches never keep it.
    response.headers["Cache-Control"] = "private, no-cache"
    return response


# -- the request body limit ---------------------------------------------------------------

def too_large_message(settings) -> str:
    photo, attachment = photo_policy(settings), attachment_policy(settings)
    return (f"上传的内容过大（一次提交不超过 {megabytes(request_limit(settings))}）。"
            f"照片每张不超过 {megabytes(photo.max_bytes)}、最多 {photo.max_count} 张；"
            f"附件每个不超过 {megabytes(attachment.max_bytes)}、最多 {attachment.max_count} 个。"
            "请压缩或减少文件后重新提交。")


def init_app(app, settings) -> None:
    """Refuse a body over the limit with 413 before parsing it, in words a citizen reads."""
    app.config["MAX_CONTENT_LENGTH"] = request_limit(settings)
    app.add_template_filter(megabytes, "megabytes")
    message = too_large_message(settings)

    @app.errorhandler(413)
    def _too_large(_err):
        if "/api/" in request.path or request.accept_mimetypes.best == "application/json":
            return jsonify(error="request_entity_too_large", message=message), 413
        return render_template("error.html", status=413, message=message), 413
