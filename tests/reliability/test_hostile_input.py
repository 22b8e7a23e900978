"""Nasty inputs: each gets the right 4xx as JSON, and the next good request still succeeds."""

import base64
import io

import pytest
from django.urls import get_resolver
from PIL import Image
from rest_framework.parsers import JSONParser
from rest_framework.views import APIView

from classifier.api.parsers import SafeJSONParser
from tests.model_weights import picture

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("loaded_model")]
URL = "/api/v1/classify"
GOOD = {"image": base64.b64encode(picture("jellyfish")).decode()}


def bomb(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("1" if fmt == "PNG" else "P", (9000, 9000)).save(buffer, format=fmt)
    return buffer.getvalue()


def assert_4xx_then_healthy(client, response, status, code=None):
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json"
    if code:
        assert response.json()["code"] == code
    assert client.post(URL, GOOD, format="json").status_code == 200


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_decompression_bombs_are_refused(auth_client, fmt):
    data = base64.b64encode(bomb(fmt)).decode()
    response = auth_client.post(URL, {"image": data}, format="json")
    assert_4xx_then_healthy(auth_client, response, 413, "image_too_large")


def test_zero_byte_body(auth_client):
    response = auth_client.post(URL, data=b"", content_type="application/json")
    assert_4xx_then_healthy(auth_client, response, 400)


def test_zero_byte_file(auth_client):
    empty = io.BytesIO(b"")
    empty.name = "empty.jpg"
    response = auth_client.post(URL, {"file": empty}, format="multipart")
    assert_4xx_then_healthy(auth_client, response, 400)


@pytest.mark.parametrize("url", [URL, "/api/v2/classify"])
@pytest.mark.parametrize("depth", [100_000, 200_000])
def test_deeply_nested_json_is_400_parse_error_on_every_version(auth_client, caplog, url, depth):
    response = auth_client.post(url, data="[" * depth + "]" * depth, content_type="application/json")
    assert_4xx_then_healthy(auth_client, response, 400, "parse_error")
    assert set(response.json()) == {"detail", "code"}
    assert not [record for record in caplog.records if record.exc_info]  # no traceback was logged


def test_no_view_parses_json_with_drfs_plain_parser():
    views = [pattern.callback.cls for pattern in _url_patterns(get_resolver()) if hasattr(pattern.callback, "cls")]
    parsers = {view: view().get_parsers() for view in views if issubclass(view, APIView)}
    assert parsers, "no DRF views found"
    plain = [
        view.__name__
        for view, instances in parsers.items()
        if any(isinstance(parser, JSONParser) and not isinstance(parser, SafeJSONParser) for parser in instances)
    ]
    assert plain == []


def _url_patterns(resolver):
    for pattern in resolver.url_patterns:
        if hasattr(pattern, "url_patterns"):
            yield from _url_patterns(pattern)
        else:
            yield pattern


def test_enormous_json_is_413(auth_client, settings):
    settings.API_MAX_BODY_BYTES = settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100_000
    response = auth_client.post(URL, data='{"image": "' + "A" * 200_000 + '"}', content_type="application/json")
    assert_4xx_then_healthy(auth_client, response, 413, "payload_too_large")


def test_multipart_with_several_files_is_400(auth_client):
    files = []
    for label in ("goldfish", "tree frog"):
        upload = io.BytesIO(picture(label))
        upload.name = f"{label}.jpg"
        files.append(upload)
    response = auth_client.post(URL, {"file": files}, format="multipart")
    # DRF keeps the last of repeated fields; a request with two files gets one answer, never a 5xx.
    assert response.status_code in (200, 400)


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/xml", "image/jpeg", "application/x-www-form-urlencoded"]
)
def test_wrong_content_types_are_415(auth_client, content_type):
    response = auth_client.post(URL, data=picture("goldfish"), content_type=content_type)
    assert_4xx_then_healthy(auth_client, response, 415, "unsupported_media_type")


def multipart_with_filename(filename: bytes) -> tuple[bytes, str]:
    boundary = b"xyzBOUNDARYxyz"
    body = (
        b"--"
        + boundary
        + b"\r\n"
        + b'Content-Disposition: form-data; name="file"; filename="'
        + filename
        + b'"\r\n'
        + b"Content-Type: image/jpeg\r\n\r\n"
        + picture("goldfish")
        + b"\r\n--"
        + boundary
        + b"--\r\n"
    )
    return body, f"multipart/form-data; boundary={boundary.decode()}"


@pytest.mark.parametrize(
    "filename,ok",
    [("é".encode() * 400 + b".jpg", True), (b"\xff\xfe.jpg", None), (b"x" * 10_000, False)],
    ids=["long-utf8", "not-utf8", "over-header-limit"],
)
def test_odd_filenames_never_5xx(auth_client, filename, ok):
    body, content_type = multipart_with_filename(filename)
    response = auth_client.post(URL, data=body, content_type=content_type)
    if ok:
        assert response.status_code == 200 and response.json()["predictions"][0]["label"] == "goldfish"
    else:
        assert response.status_code in ((400,) if ok is False else (200, 400))
        assert response["Content-Type"] == "application/json"
    assert client_ok(auth_client)


def test_overlong_json_filename_is_400(auth_client):
    response = auth_client.post(URL, {**GOOD, "filename": "x" * 10_000}, format="json")
    assert_4xx_then_healthy(auth_client, response, 400)


def test_very_long_headers_and_keys(client):
    response = client.post(
        URL, GOOD, format="json", HTTP_AUTHORIZATION="Bearer " + "k" * 1_000_000, HTTP_X_JUNK="j" * 100_000
    )
    assert response.status_code == 401 and response.json()["code"] == "invalid_api_key"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_corrupt_bodies_of_every_format(auth_client, fmt):
    data = bytearray(picture("goldfish", fmt=fmt))
    data[len(data) // 3 :] = b"\x00" * (len(data) - len(data) // 3)
    response = auth_client.post(URL, {"image": base64.b64encode(bytes(data)).decode()}, format="json")
    assert response.status_code in (200, 400)  # some formats decode zeroed pixels; none may 5xx
    assert client_ok(auth_client)


def client_ok(client) -> bool:
    return client.post(URL, GOOD, format="json").status_code == 200
