"""Every endpoint, every bad request, and that the server keeps serving after each."""
import io
import re

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cnnlab.serving.app import create_app
from cnnlab.serving.options import ServeOptions

LOCAL = "http://localhost"  # a name the server answers by default (bound to 127.0.0.1)


@pytest.fixture(scope="module")
def client(tiny_run):
    return TestClient(create_app(str(tiny_run), ServeOptions(max_upload_mb=0.05)), base_url=LOCAL)


def png(size=16, seed=0, fmt="PNG") -> bytes:
    arr = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt)
    return buf.getvalue()


def upload(client, *blobs, name="x.png"):
    return client.post("/predict", files=[("files", (f"{i}-{name}", b, "image/png")) for i, b in enumerate(blobs)])


def test_health_model_page_and_schema(client):
    assert client.get("/health").json() == {"status": "ok"}
    info = client.get("/model").json()
    assert info["classes"] == ["a", "b", "c"] and info["input_size"] == [3, 16, 16] and info["name"] == "cnn-small"
    assert "train_loss" in info["training"]
    page = client.get("/")
    assert page.status_code == 200 and 'id="drop"' in page.text and "http" not in page.text.split("<script>")[0]
    assert "/predict" in client.get("/openapi.json").json()["paths"]


def test_predict_one_and_several_images(client, tiny_run, bars):
    import cnnlab

    f = sorted((bars / "b").glob("*.png"))[0]
    r = upload(client, f.read_bytes())
    assert r.status_code == 200
    got = r.json()["predictions"][0]
    expected = cnnlab.load(tiny_run).predict(f)[0]
    assert got["label"] == expected.label and got["probability"] == pytest.approx(expected.probability, abs=1e-5)
    assert [t["label"] for t in got["top_k"]] == [t["label"] for t in expected.top_k]
    r = upload(client, png(seed=1), png(seed=2), png(seed=3))
    assert len(r.json()["predictions"]) == 3


@pytest.mark.parametrize("blob,status,message", [
    (b"not an image at all", 415, "not a readable image"),
    (png()[:60], 422, "corrupt"),
    (b"", 422, "empty file"),
])
def test_bad_images_get_json_errors_and_the_server_keeps_serving(client, blob, status, message):
    r = upload(client, blob)
    assert r.status_code == status and message in r.json()["detail"]
    assert upload(client, png()).status_code == 200


def test_too_large_upload_is_413(client):
    big = png(size=160, fmt="BMP")  # ~77 KB > 0.05 MB: refused while reading the file
    r = upload(client, big)
    assert r.status_code == 413 and "too large" in r.json()["detail"]
    huge = png(size=400, fmt="BMP")  # ~480 KB: refused from the Content-Length, before reading the body
    r = upload(client, huge)
    assert r.status_code == 413 and r.json()["detail"].startswith("upload too large: 0.5 MB > 0.05 MB")
    assert client.get("/health").status_code == 200


def test_decompression_bomb_is_refused(client, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    r = upload(client, png(size=16))
    assert r.status_code == 422 and "decompression bomb" in r.json()["detail"]


def test_no_file_is_a_validation_error(client):
    assert client.post("/predict").status_code == 422


def test_serving_with_the_onnx_backend(tiny_run, bars):
    import cnnlab

    client = TestClient(create_app(str(tiny_run), ServeOptions(backend="onnx")), base_url=LOCAL)
    assert client.get("/model").json()["backend"] == "onnx"
    f = sorted((bars / "a").glob("*.png"))[0]
    got = upload(client, f.read_bytes()).json()["predictions"][0]
    expected = cnnlab.load(tiny_run).predict(f)[0]
    assert got["label"] == expected.label and got["probability"] == pytest.approx(expected.probability, abs=1e-5)


def test_api_docs_work_offline(client):
    page = client.get("/docs").text
    scripts = re.findall(r'src="([^"]+\.js)"', page) + re.findall(r'href="([^"]+\.css)"', page)
    assert scripts and all(s.startswith("/") for s in scripts)  # served here, no CDN
    assert all(client.get(s).status_code == 200 for s in scripts)


def test_a_single_file_field_is_accepted_and_a_missing_one_says_which_field(client):
    r = client.post("/predict", files=[("file", ("x.png", png(), "image/png"))])
    assert r.status_code == 200 and len(r.json()["predictions"]) == 1
    r = client.post("/predict", files=[("image", ("x.png", png(), "image/png"))])
    assert r.status_code == 422 and "field named 'files' (or 'file')" in r.json()["detail"]


def test_a_model_with_non_finite_outputs_is_a_json_error(tiny_run):
    import torch

    from cnnlab.inference.predictor import load

    predictor = load(tiny_run)
    with torch.no_grad():
        next(p for p in predictor.model.parameters() if p.dim() > 1).fill_(float("inf"))
    client = TestClient(create_app(str(tiny_run), predictor=predictor), base_url=LOCAL)
    r = client.post("/predict", files=[("files", ("x.png", png(), "image/png"))])
    assert r.status_code == 500 and "NaN or infinite outputs" in r.json()["detail"]


@pytest.mark.parametrize("content_type", ["image/png", "application/octet-stream"])
def test_a_raw_image_body_gives_the_multipart_answer(client, content_type):
    blob = png(seed=4)
    raw = client.post("/predict", content=blob, headers={"Content-Type": content_type})
    assert raw.status_code == 200
    [got], [want] = raw.json()["predictions"], upload(client, blob).json()["predictions"]
    assert got["filename"] is None and got["label"] == want["label"] and got["top_k"] == want["top_k"]
    bad = client.post("/predict", content=b"not an image", headers={"Content-Type": content_type})
    assert bad.status_code == 415 and bad.json()["detail"] == "the request body: not a readable image"


def test_unsupported_bodies_get_json_4xx_and_the_server_keeps_serving(client, tiny_run):
    r = client.post("/predict", content=b"{}", headers={"Content-Type": "application/json"})
    assert r.status_code == 415 and "unsupported Content-Type 'application/json'" in r.json()["detail"]
    r = client.post("/predict", data={"files": "just text"})  # a form, but not multipart
    assert r.status_code == 415 and "application/x-www-form-urlencoded" in r.json()["detail"]
    r = client.post("/predict", files=[("files", (None, b"just text"))])  # a multipart text field
    assert r.status_code == 422 and "holds text, not a file" in r.json()["detail"]
    many = [("files", (f"{i}.png", b"x", "image/png")) for i in range(2000)]  # a flood of parts: refused unread
    roomy = TestClient(create_app(str(tiny_run), ServeOptions(max_upload_mb=10)), base_url=LOCAL)  # 2,000 small parts fit in 10 MB
    r = roomy.post("/predict", files=many)
    assert r.status_code == 400 and "Too many files" in r.json()["detail"]
    big = client.post("/predict", content=b"\0" * 200_000, headers={"Content-Type": "image/png"})
    assert big.status_code == 413
    assert upload(client, png()).status_code == 200


def test_the_openapi_schema_documents_every_field_and_both_bodies(client):
    from openapi_spec_validator import validate

    schema = client.get("/openapi.json").json()
    validate(schema)  # OpenAPI 3.1: raises on a field the specification does not allow
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "image/*", "application/octet-stream"} <= set(body)
    parts = schema["components"]["schemas"]
    assert set(parts["Prediction"]["properties"]) == {"filename", "label", "probability", "top_k", "uncertain"}
    assert all(p.get("description") for model in ("Prediction", "TopK", "ModelInfo", "PredictResponse")
               for p in parts[model]["properties"].values())
    assert set(schema["paths"]["/predict"]["post"]["responses"]) >= {"200", "413", "415", "422", "500"}


def test_threshold_marks_unsure_predictions_and_a_bad_one_is_a_422(client):
    blobs = [png(seed=s) for s in range(6)]  # noise: the model is unsure of some of it
    plain = upload(client, *blobs).json()["predictions"]
    probs = sorted(p["probability"] for p in plain)
    threshold = (probs[2] + probs[3]) / 2
    assert 0 < threshold < 1 and probs[2] < probs[3]
    r = client.post(f"/predict?threshold={threshold}",
                    files=[("files", (f"{i}.png", b, "image/png")) for i, b in enumerate(blobs)])
    assert r.status_code == 200
    for before, after in zip(plain, r.json()["predictions"]):
        assert after["uncertain"] == (before["probability"] < threshold)
        assert after["label"] == (None if after["uncertain"] else before["label"]) and after["top_k"] == before["top_k"]
    raw = client.post(f"/predict?threshold={threshold}", content=blobs[0], headers={"content-type": "image/png"})
    assert raw.json()["predictions"][0]["uncertain"] == (plain[0]["probability"] < threshold)
    for bad in ("1.5", "0", "abc"):
        r = client.post(f"/predict?threshold={bad}", files=[("files", ("x.png", blobs[0], "image/png"))])
        assert r.status_code == 422 and "threshold" in r.text
    assert client.get("/health").json() == {"status": "ok"}


def test_allowed_hosts_keep_to_their_names_and_subdomains_and_say_how_to_add_one(tiny_run):
    from cnnlab.serving.options import default_allowed_hosts

    app = TestClient(create_app(str(tiny_run), ServeOptions(allowed_hosts=["api.example", "*.corp.example", "::1"])))
    for host in ("api.example", "API.example:8443", "x.corp.example", "[::1]:8000"):
        assert app.get("/health", headers={"host": host}).status_code == 200, host
    for host in ("corp.example", "api.example.evil", "testserver", "[::2]", "api.example:x", "a b"):
        r = app.get("/health", headers={"host": host})
        assert r.status_code == 400 and "--allowed-hosts" in r.json()["detail"], host
    assert default_allowed_hosts("127.0.0.1") == default_allowed_hosts("::1") == ["localhost", "127.0.0.1", "[::1]"]
    assert default_allowed_hosts("localhost") == default_allowed_hosts("127.0.0.2") == ["localhost", "127.0.0.1", "[::1]"]
    assert default_allowed_hosts("0.0.0.0") == default_allowed_hosts("192.0.2.7") == ["*"]


def test_the_pixel_budget_refuses_an_image_over_it_and_makes_others_wait_then_503():
    import asyncio

    from fastapi import HTTPException

    from cnnlab.serving.limits import PixelBudget

    budget = PixelBudget(100, wait_s=0.2)
    with pytest.raises(HTTPException) as over:
        budget.check([50, 101], ["a.png", "b.png"])
    assert over.value.status_code == 413 and over.value.detail.startswith("b.png: image too large")
    assert budget.check([50, None, 70], ["a", "b", "c"]) == 70  # decoded one after another: the largest is held

    async def scenario():
        order, release = [], asyncio.Event()

        async def hold(name, pixels, until=None):
            async with budget.reserve(pixels):
                order.append((name, budget.free))
                if until is not None:
                    await until.wait()

        first = asyncio.create_task(hold("first", 70, release))
        await asyncio.sleep(0)
        others = asyncio.gather(hold("waits", 60), hold("fits", 30))
        while len(order) < 2 or not budget._waiters:  # events, not a sleep: "fits" is in and "waits" waits
            await asyncio.sleep(0)
        release.set()  # "first" gives its pixels back: "waits" gets them
        await others
        await first
        with pytest.raises(HTTPException) as busy:
            async with budget.reserve(80):
                await hold("late", 30)  # 80 held, 30 more do not fit within wait_s
        return order, busy.value

    order, busy = asyncio.run(scenario())
    assert order == [("first", 30), ("fits", 0), ("waits", 40)]
    assert busy.status_code == 503 and busy.headers == {"Retry-After": "1"} and budget.free == 100


def test_a_chunked_multipart_body_over_the_limit_is_413_and_no_part_is_spooled_to_disk(tiny_run, monkeypatch):
    import tempfile

    made = []
    spooled = tempfile.SpooledTemporaryFile

    class Watched(spooled):
        def rollover(self):
            made.append(self)
            super().rollover()

    monkeypatch.setattr("starlette.formparsers.SpooledTemporaryFile", Watched)
    app = TestClient(create_app(str(tiny_run), ServeOptions(max_upload_mb=3)), base_url=LOCAL)

    def body(size):
        yield b'--b\r\nContent-Disposition: form-data; name="files"; filename="x.png"\r\n\r\n'
        for _ in range(size // 65536):
            yield b"\0" * 65536
        yield b"\r\n--b--\r\n"

    headers = {"content-type": "multipart/form-data; boundary=b"}
    r = app.post("/predict", content=body(8 * 1024 * 1024), headers=headers)  # no Content-Length: chunked
    assert r.status_code == 413 and "upload too large" in r.json()["detail"]
    r = app.post("/predict", content=body(2 * 1024 * 1024), headers=headers)  # 2 MB: over Starlette's 1 MB spool
    assert r.status_code == 415 and "not a readable image" in r.json()["detail"]
    assert not made  # neither was ever rolled over to a file on disk


@pytest.mark.parametrize("bad", ["1.5", "0", "abc", "nan", "-0.2"])
def test_a_bad_threshold_in_the_query_or_the_form_is_a_422_with_one_line(client, bad):
    """One check (``check_threshold``) for the flag, the Python API, the query and the form field: one message."""
    from cnnlab.errors import OutOfRange
    from cnnlab.inference.prediction import check_threshold

    says = f"threshold {bad}: a probability strictly between 0 and 1 (e.g. 0.8)"
    query = client.post(f"/predict?threshold={bad}", files=[("files", ("x.png", png(), "image/png"))])
    form = client.post("/predict", files=[("files", ("x.png", png(), "image/png"))], data={"threshold": bad})
    raw = client.post(f"/predict?threshold={bad}", content=png(), headers={"content-type": "image/png"})
    for answer in (query, form, raw):
        assert answer.status_code == 422 and answer.json() == {"detail": says}
    with pytest.raises(OutOfRange) as error:  # the Python API's and the CLI's error: the server's 422 too
        check_threshold(bad)
    assert str(error.value) == says and error.value.http_status == 422
    assert upload(client, png()).status_code == 200


def test_a_threshold_in_the_form_marks_unsure_predictions_as_the_query_does(client):
    blobs = [png(seed=s) for s in range(6)]
    plain = upload(client, *blobs).json()["predictions"]
    probs = sorted(p["probability"] for p in plain)
    threshold = (probs[2] + probs[3]) / 2
    files = [("files", (f"{i}.png", b, "image/png")) for i, b in enumerate(blobs)]
    by_form = client.post("/predict", files=files, data={"threshold": str(threshold)}).json()["predictions"]
    by_query = client.post(f"/predict?threshold={threshold}", files=files).json()["predictions"]
    assert by_form == by_query and [p["uncertain"] for p in by_form] == [p["probability"] < threshold for p in plain]
    assert sum(p["uncertain"] for p in by_form) == 3
