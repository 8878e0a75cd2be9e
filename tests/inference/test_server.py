"""Every endpoint, every bad request, and that the server keeps serving after each."""
import io
import re

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cnnlab.inference.server import create_app


@pytest.fixture(scope="module")
def client(tiny_run):
    return TestClient(create_app(str(tiny_run), max_upload_mb=0.05))


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

    client = TestClient(create_app(str(tiny_run), backend="onnx"))
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
    client = TestClient(create_app(str(tiny_run), predictor=predictor))
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
    roomy = TestClient(create_app(str(tiny_run), max_upload_mb=10))  # 2,000 small parts fit in 10 MB
    r = roomy.post("/predict", files=many)
    assert r.status_code == 400 and "Too many files" in r.json()["detail"]
    big = client.post("/predict", content=b"\0" * 200_000, headers={"Content-Type": "image/png"})
    assert big.status_code == 413
    assert upload(client, png()).status_code == 200


def test_the_openapi_schema_documents_every_field_and_both_bodies(client):
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "image/*", "application/octet-stream"} <= set(body)
    parts = schema["components"]["schemas"]
    assert set(parts["PredictionOut"]["properties"]) == {"filename", "label", "probability", "top_k", "uncertain"}
    assert all(p.get("description") for model in ("PredictionOut", "TopK", "ModelInfo", "PredictResponse")
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
