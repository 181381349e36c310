"""Upload checks without a service (services/common/uploads.py, blobs.py): the tricks a
hostile upload tries, and what a stored photo keeps of the original."""
from __future__ import annotations

import io

import pytest
from flask import Flask
from PIL import Image
from pypdf import PdfWriter
from pypdf.generic import DictionaryObject, NameObject, TextStringObject

from services.common import uploads
from services.common.blobs import BlobNotFound, BlobStore
from services.common.uploads import JPEG, PDF, PNG, WEBP, UploadRejected

PHOTOS = uploads.Policy("照片", uploads.IMAGE_TYPES, 5 * 1024 * 1024, 4)
ATTACHMENTS = uploads.Policy("附件", (*uploads.IMAGE_TYPES, PDF), 10 * 1024 * 1024, 3)
GPS = {1: "N", 2: (41.0, 59.0, 30.0), 3: "E", 4: (121.0, 39.0, 10.0)}  # 阜新


def image_bytes(fmt="JPEG", size=(64, 48), colour="red", mode="RGB", exif=None, **save) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, colour).save(out, fmt, **({"exif": exif} if exif else {}), **save)
    return out.getvalue()


def exif_with_gps(orientation=None) -> bytes:
    exif = Image.Exif()
    exif[0x8825] = GPS  # GPSInfo
    exif[0x010F] = "PhoneMaker"  # Make
    if orientation:
        exif[0x0112] = orientation
    return exif.tobytes()


def pdf_bytes(active=None, attachment=False) -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(200, 200)
    if active:
        writer.root_object[NameObject("/OpenAction")] = DictionaryObject(
            {NameObject("/S"): NameObject("/JavaScript"), NameObject("/JS"): TextStringObject(active)})
    if attachment:
        writer.add_attachment("run.exe", b"MZ")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def rejected(name, data, policy=PHOTOS) -> str:
    with pytest.raises(UploadRejected) as err:
        uploads.prepare(name, data, policy)
    return str(err.value)


# -- type by content -------------------------------------------------------------------

@pytest.mark.parametrize("fmt,content_type", [("JPEG", JPEG), ("PNG", PNG), ("WEBP", WEBP)])
def test_each_photo_type_is_taken_by_its_content_whatever_its_name(fmt, content_type):
    prepared = uploads.prepare("IMG_0001.gif", image_bytes(fmt), PHOTOS)
    assert prepared.content_type == content_type
    assert prepared.filename == f"IMG_0001.{uploads.EXTENSIONS[content_type]}"  # the real type's extension
    assert Image.open(io.BytesIO(prepared.data)).format == fmt
    assert Image.open(io.BytesIO(prepared.thumbnail)).format == "JPEG"


@pytest.mark.parametrize("name,data", [
    ("report.jpg", b"%!PS-Adobe-3.0\nplain text pretending to be a photo"),
    ("page.png", b"<!doctype html><html><script>alert(document.cookie)</script></html>"),
    ("logo.png", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'),
    ("setup.jpg", b"MZ\x90\x00\x03" + bytes(200)),
    ("anim.webp", b"GIF89a" + bytes(100)),
])
def test_non_images_with_an_image_name_are_refused(name, data):
    assert "不是可接受的照片格式" in rejected(name, data)


def test_a_pdf_is_an_attachment_but_not_a_photo():
    assert "不是可接受的照片格式" in rejected("scan.jpg", pdf_bytes())
    assert uploads.prepare("scan.jpg", pdf_bytes(), ATTACHMENTS).filename == "scan.pdf"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_a_truncated_image_is_refused(fmt):
    noisy = io.BytesIO()
    Image.effect_noise((400, 300), 60).convert("RGB").save(noisy, fmt)
    data = noisy.getvalue()
    assert "无法识别为完整的图片" in rejected(f"x.{fmt.lower()}", data[: len(data) // 2])


def test_magic_bytes_alone_are_not_an_image():
    assert "无法识别为完整的图片" in rejected("x.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 500)
    assert "无法识别为完整的图片" in rejected("x.jpg", b"\xff\xd8\xff\xe0" + b"<script>alert(1)</script>" * 20)


def test_a_polyglot_keeps_only_its_pixels():
    """A real JPEG with HTML appended (and in a comment) is taken, but what is stored is a
    fresh encoding of the pixels: the HTML is gone."""
    payload = b"<html><script>alert(document.cookie)</script></html>"
    data = image_bytes("JPEG", comment=payload) + payload
    prepared = uploads.prepare("x.jpg", data, PHOTOS)
    assert b"<script>" not in prepared.data and b"<script>" not in prepared.thumbnail


def test_too_many_pixels_is_refused_before_decoding():
    # A 10000×6000 PNG of one colour is a few KB: small on the wire, 180 MB in memory.
    data = image_bytes("PNG", size=(10000, 6000), mode="L", colour=0)
    assert len(data) < 200_000
    assert "像素过多" in rejected("bomb.png", data)


def test_size_and_emptiness_per_file():
    assert "是空文件" in rejected("a.jpg", b"")
    small = uploads.Policy("照片", uploads.IMAGE_TYPES, 1000, 4)
    assert "超过" in rejected("a.jpg", image_bytes("PNG", size=(300, 300), colour=None) + bytes(1000), small)


# -- what a stored photo keeps ---------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_exif_and_gps_are_removed(fmt):
    data = image_bytes(fmt, exif=exif_with_gps())
    assert Image.open(io.BytesIO(data)).getexif().get(0x8825)  # the original has GPS
    prepared = uploads.prepare("x", data, PHOTOS)
    for stored in (prepared.data, prepared.thumbnail):
        image = Image.open(io.BytesIO(stored))
        assert not image.getexif(), fmt
        assert "exif" not in image.info and "xmp" not in image.info
    assert b"PhoneMaker" not in prepared.data


def test_a_photo_taken_sideways_is_stored_upright():
    """EXIF orientation is applied before the EXIF is dropped, so nothing lies on its side."""
    prepared = uploads.prepare("x.jpg", image_bytes("JPEG", size=(80, 40), exif=exif_with_gps(orientation=6)),
                               PHOTOS)
    assert Image.open(io.BytesIO(prepared.data)).size == (40, 80)


def test_large_photos_are_scaled_down_and_thumbnails_are_small():
    prepared = uploads.prepare("x.jpg", image_bytes("JPEG", size=(4000, 3000)), PHOTOS)
    assert max(Image.open(io.BytesIO(prepared.data)).size) == uploads.MAX_SIDE
    assert max(Image.open(io.BytesIO(prepared.thumbnail)).size) == uploads.THUMBNAIL_SIDE


def test_transparent_png_keeps_its_alpha():
    prepared = uploads.prepare("x.png", image_bytes("PNG", mode="RGBA", colour=(0, 0, 0, 0)), PHOTOS)
    assert Image.open(io.BytesIO(prepared.data)).mode == "RGBA"


# -- PDFs ----------------------------------------------------------------------------------

def test_pdf_with_script_or_embedded_file_or_password_is_refused():
    assert "含有脚本" in rejected("a.pdf", pdf_bytes(active="app.alert(1)"), ATTACHMENTS)
    assert "含有脚本" in rejected("a.pdf", pdf_bytes(attachment=True), ATTACHMENTS)
    writer = PdfWriter()
    writer.add_blank_page(100, 100)
    writer.encrypt("secret")
    out = io.BytesIO()
    writer.write(out)
    assert "加密" in rejected("a.pdf", out.getvalue(), ATTACHMENTS)


def test_pdf_magic_without_a_document_is_refused():
    assert "不是完整有效的 PDF" in rejected("a.pdf", b"%PDF-1.7\n<html><script>alert(1)</script>", ATTACHMENTS)


# -- names ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name,shown", [
    ("../../etc/passwd", "passwd.jpg"),
    ("..\\..\\Windows\\System32\\drivers\\etc\\hosts", "hosts.jpg"),
    ("C:\\Users\\张三\\Desktop\\漏水照片.JPG", "漏水照片.jpg"),
    ("/var/www/html/index.php", "index.jpg"),
    ("photo\u202egpj.exe", "photogpj.jpg"),  # right-to-left override: would show as photoexe.jpg
    ("<img src=x onerror=alert(1)>.png", "img src=x onerror=alert(1).jpg"),
    ("a\x00b\r\n.jpg", "ab.jpg"),
    ("...", "照片.jpg"), ("", "照片.jpg"), (None, "照片.jpg"),
])
def test_display_names_are_plain_names(name, shown):
    assert uploads.display_filename(name, JPEG, "照片") == shown


def test_long_names_are_cut():
    assert len(uploads.display_filename("长" * 500 + ".png", PNG)) == uploads.MAX_FILENAME + 4


# -- forms of several files ----------------------------------------------------------------

class Part:  # what werkzeug gives for one file of a multipart form
    def __init__(self, filename, data):
        self.filename, self.stream, self.content_length = filename, io.BytesIO(data), len(data)


def test_count_limit_and_the_empty_part_of_an_unused_input():
    one = image_bytes()
    assert len(uploads.read_uploads([Part("", b""), Part("a.jpg", one)], PHOTOS)) == 1
    with pytest.raises(UploadRejected, match="最多上传 4 个照片"):
        uploads.read_uploads([Part(f"{n}.jpg", one) for n in range(5)], PHOTOS)


def test_one_bad_file_refuses_the_whole_set_before_anything_is_stored(tmp_path):
    store = BlobStore(tmp_path)
    with pytest.raises(UploadRejected):
        prepared = uploads.read_uploads([Part("a.jpg", image_bytes()), Part("b.png", b"<html>")], PHOTOS)
        uploads.store_uploads(store, prepared)
    assert not any(tmp_path.iterdir())


# -- the blob store ------------------------------------------------------------------------

def test_blobs_are_stored_by_hash_once_and_atomically(tmp_path):
    store = BlobStore(tmp_path)
    refs = uploads.store_uploads(store, [uploads.prepare("../../etc/passwd", image_bytes(), PHOTOS)])
    (ref,) = refs
    path = store.path(ref["sha256"])
    assert path == tmp_path / ref["sha256"][:2] / ref["sha256"] and path.is_file()
    assert ref["filename"] == "passwd.jpg" and ref["content_type"] == JPEG and ref["size"] == path.stat().st_size
    assert store.exists(ref["thumbnail_sha256"])
    assert store.put(path.read_bytes()) == ref["sha256"]  # the same content again: same key
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == sorted(
        [ref["sha256"], ref["thumbnail_sha256"]])  # no name from the user, no temp file left


@pytest.mark.parametrize("key", ["../../etc/passwd", "A" * 64, "0" * 63, "0" * 64 + "/x", ""])
def test_the_store_opens_only_hex_keys(tmp_path, key):
    with pytest.raises(BlobNotFound):
        BlobStore(tmp_path).path(key)


# -- serving -------------------------------------------------------------------------------

def serve(store, key, filename):
    app = Flask(__name__)
    with app.test_request_context():
        return uploads.send_blob(store, key, filename)


def test_images_are_served_inline_with_safe_headers(tmp_path):
    store = BlobStore(tmp_path)
    key = store.put(uploads.prepare("x.png", image_bytes("PNG"), PHOTOS).data)
    response = serve(store, key, "现场照片.png")
    assert response.mimetype == PNG
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"] == "sandbox"
    assert response.headers["Cache-Control"] == "private, no-cache"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("inline;")
    assert "filename*=UTF-8''%E7%8E%B0%E5%9C%BA%E7%85%A7%E7%89%87.png" in disposition  # RFC 5987
    assert response.headers["ETag"].strip('"') == key


def test_pdfs_are_downloads_and_the_type_comes_from_the_stored_bytes(tmp_path):
    store = BlobStore(tmp_path)
    key = store.put(pdf_bytes())
    response = serve(store, key, "回复函.jpg")  # whatever a name says
    assert response.mimetype == PDF
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert ".pdf" in response.headers["Content-Disposition"]


def test_a_blob_of_no_accepted_type_is_not_served(tmp_path):
    from werkzeug.exceptions import NotFound
    store = BlobStore(tmp_path)
    key = store.put(b"<html><script>alert(1)</script></html>")
    with pytest.raises(NotFound):
        serve(store, key, "x.png")
    with pytest.raises(NotFound):
        serve(store, "f" * 64, "x.png")  # no such blob


def test_the_request_limit_fits_the_largest_form():
    from services.common.config import from_env
    settings = from_env({})
    assert uploads.request_limit(settings) >= 4 * settings.upload_photo_max_bytes
    assert uploads.request_limit(settings) >= 3 * settings.upload_attachment_max_bytes
    small = from_env({"FZT_UPLOAD_PHOTO_MAX_BYTES": "1000", "FZT_UPLOAD_MAX_PHOTOS": "2",
                      "FZT_UPLOAD_ATTACHMENT_MAX_BYTES": "1000", "FZT_UPLOAD_MAX_ATTACHMENTS": "1"})
    assert uploads.request_limit(small) == 2000 + uploads.FORM_ALLOWANCE
