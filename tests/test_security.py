"""Hostile inputs, crafted at test time: pickle payloads, zip bombs, malformed safetensors, TorchScript,
ONNX external-data traversal, pixel bombs. Each gets one line and exit code 2 (or a 4xx from the server),
and no code from a file ever runs. Also the colours of unusual image modes, pinned.

The commands run in this process (``cli``: a payload that ran would write its marker here just the same);
serve, the memory measurement and a missing extra start a process of their own."""
import contextlib
import io
import os
import shutil
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from onnx import TensorProto, helper
from PIL import Image

import hostile
from cnnlab import files
from conftest import invoke
from cnnlab.data.images import BadImage, decode
from cnnlab.errors import WeightsError

CNNLAB = [sys.executable, "-m", "cnnlab"]


@contextlib.contextmanager
def _environ(env: dict):
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def cli(*args, env=None):
    with _environ(env or {}):
        return invoke(*args)


def cli_process(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*CNNLAB, *map(str, args)], capture_output=True, text=True, env=env, timeout=300)


def cli_measured(*args):
    """Run the CLI and return (exit code, stderr, peak resident memory in MB) of that one process."""
    proc = subprocess.Popen([*CNNLAB, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    err = proc.stderr.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, err, usage.ru_maxrss / 1024


def assert_one_line_refusal(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


def train_with_weights(bars, tmp_path, weights, env=None):
    return cli("train", bars, "--out", tmp_path / "run", "--model", "resnet18",
               "--weights", weights, "--epochs", "1", "--progress", "false", env=env)


# ----------------------------------------------------------------------------- pickle payloads
@pytest.mark.parametrize("force_unsafe", [False, True])
def test_pickle_payload_in_a_pth_never_runs(tmp_path, bars, force_unsafe):
    marker = tmp_path / "pwned"
    evil = hostile.pickle_payload_pth(tmp_path / "evil.pth", marker)
    env = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"} if force_unsafe else None
    assert_one_line_refusal(train_with_weights(bars, tmp_path, evil, env), "evil.pth is not a safe model file")
    assert not marker.exists()


def test_pickle_payload_in_a_checkpoint_never_runs_on_resume(tmp_path, tiny_run):
    marker = tmp_path / "pwned"
    run = shutil.copytree(tiny_run, tmp_path / "run")
    (run / "training.json").unlink()  # an unfinished run: --resume reads its last checkpoint
    hostile.pickle_payload_pth(run / "checkpoints" / "last.ckpt", marker)
    assert_one_line_refusal(cli("train", "--resume", "--out", run), "last.ckpt is not a safe model file")
    assert not marker.exists()


def test_pickle_renamed_to_safetensors_never_runs(tmp_path, bars):
    marker = tmp_path / "pwned"
    evil = hostile.raw_pickle(tmp_path / "evil.safetensors", marker)
    assert_one_line_refusal(train_with_weights(bars, tmp_path, evil), "header claims")
    assert not marker.exists()


def test_weights_only_is_explicit_in_every_torch_load():
    """TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD only overrides calls that leave weights_only out."""
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parent.parent / "src" / "cnnlab"
    calls = [(p.name, m.group(0)) for p in root.rglob("*.py")
             for m in re.finditer(r"torch\.load\([^)]*\)", p.read_text())]
    assert calls and all("weights_only=True" in c for _, c in calls), calls
    # torch.jit.load runs code from what it loads: only bytes that cnnlab serialised itself, in memory
    jit = [m.group(0) for p in root.rglob("*.py") for m in re.finditer(r"jit\.load\([^)]*\)", p.read_text())]
    assert jit and all(c.startswith("jit.load(io.BytesIO(") for c in jit), jit


# ----------------------------------------------------------------------------- zip bombs
@pytest.mark.slow  # two processes: their peak memory is the measure
def test_zip_bomb_is_refused_before_it_inflates(tmp_path, bars):
    bomb = hostile.zip_bomb(tmp_path / "bomb.pth", gib=2)  # ~2 MB on disk, 2 GiB inflated
    assert bomb.stat().st_size < 4 << 20
    with pytest.raises(WeightsError, match="compressed"):
        files.check_torch_file(bomb)
    small = hostile.oversized_entry(tmp_path / "small.pth")  # refused at the same point, nothing inflated
    code, err, bomb_mb = cli_measured("train", bars, "--out", tmp_path / "a", "--model", "resnet18", "--weights", bomb,
                                      "--epochs", "1")
    assert code == 2 and "zip bomb" in err and len(err.strip().splitlines()) == 1, err
    code, err, base_mb = cli_measured("train", bars, "--out", tmp_path / "b", "--model", "resnet18", "--weights", small,
                                      "--epochs", "1")
    assert code == 2 and "claims" in err, err
    assert bomb_mb - base_mb < 200, (bomb_mb, base_mb)


def test_entries_larger_than_the_file_are_refused(tmp_path):
    with pytest.raises(WeightsError, match=r"claims 1,099,511,627,776 bytes"):
        files.load_torch(hostile.oversized_entry(tmp_path / "big.pth"))


def test_a_plain_torch_save_file_still_loads(tmp_path):
    torch.save({"w": torch.arange(3.0)}, tmp_path / "ok.pth")
    assert torch.equal(files.load_torch(tmp_path / "ok.pth")["w"], torch.arange(3.0))


# ----------------------------------------------------------------------------- safetensors
HOSTILE_HEADERS = [
    (hostile.deep_safetensors, "nests too deep"),
    (hostile.long_integer_safetensors, "an integer of 6,001 digits"),
]


@pytest.mark.parametrize("craft,message", [
    (hostile.overlapping_safetensors, "overlaps"),
    (hostile.huge_header_safetensors, "header claims 1,000,000,000,000 bytes"),
    *HOSTILE_HEADERS,
])
def test_malformed_safetensors_are_one_line(tmp_path, bars, craft, message):
    assert_one_line_refusal(train_with_weights(bars, tmp_path, craft(tmp_path / "bad.safetensors")), message)


@pytest.mark.parametrize("craft,message", [(hostile.overlapping_safetensors, "overlaps"), *HOSTILE_HEADERS])
@pytest.mark.parametrize("command", ["predict", "evaluate", "train --weights"])
def test_a_malformed_model_safetensors_in_a_run_is_one_line(tmp_path, tiny_run, bars, craft, message, command):
    run = shutil.copytree(tiny_run, tmp_path / "run")
    craft(run / "model.safetensors")
    args = {"predict": ["predict", run, next(bars.rglob("*.png"))], "evaluate": ["evaluate", run, bars],
            "train --weights": ["train", bars, "--out", tmp_path / "new", "--weights", run, "--epochs", "1"]}[command]
    assert_one_line_refusal(cli(*args), "model.safetensors is not a safe model file", message)


@pytest.mark.slow  # a server process
@pytest.mark.parametrize("craft,message", HOSTILE_HEADERS)
def test_serve_refuses_a_hostile_weights_header_as_it_loads(tmp_path, tiny_run, craft, message):
    from cnnlab.serving.app import create_app
    from cnnlab.serving.options import ServeOptions

    run = shutil.copytree(tiny_run, tmp_path / "run", ignore=shutil.ignore_patterns("export"))
    craft(run / "model.safetensors")
    with pytest.raises(WeightsError, match=message):
        create_app(str(run), ServeOptions(backend="torch"))
    proc = cli_process("serve", run, "--port", "0")  # --backend auto: the ONNX export reads the weights first
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()  # after the "serving ..." and "exporting ..." lines
    assert lines[-1].startswith("error: ") and "model.safetensors is not a safe model file" in lines[-1]
    assert message in lines[-1] and not any(line.startswith(("warning", "error")) for line in lines[:-1]), lines


def test_a_hostile_metadata_string_is_refused_in_one_error(tmp_path):
    from cnnlab import rundir

    path = hostile.deep_metadata_safetensors(tmp_path / "meta.safetensors")
    files.check_safetensors(path)  # the header itself is well formed
    with pytest.raises(WeightsError, match="its metadata nests too deep"):
        rundir.read_weights_metadata(path)


# ----------------------------------------------------------------------------- TorchScript, ONNX
def test_a_torchscript_archive_is_refused_by_name(tmp_path, bars):
    archive = hostile.torchscript_archive(tmp_path / "scripted.pt")
    assert_one_line_refusal(train_with_weights(bars, tmp_path, archive), "TorchScript archive")


def _onnx_with_external(path, location):
    w = helper.make_tensor("w", TensorProto.FLOAT, [1], [0.0])
    del w.float_data[:]
    w.data_location = TensorProto.EXTERNAL
    entry = w.external_data.add()
    entry.key, entry.value = "location", location
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], [w])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(helper.make_model(graph).SerializeToString())


@pytest.mark.parametrize("where", ["parent", "absolute", "symlink"])
def test_onnx_external_data_outside_its_folder_is_refused(tmp_path, tiny_run, bars, where):
    run = shutil.copytree(tiny_run, tmp_path / "run")
    shutil.rmtree(run / "export", ignore_errors=True)  # another test may have exported the shared run
    secret = tmp_path / "secret.bin"
    secret.write_bytes(struct.pack("<f", 1.0))
    location = {"parent": "../../secret.bin", "absolute": str(secret), "symlink": "link.bin"}[where]
    if where == "symlink":
        (run / "export").mkdir()
        (run / "export" / "link.bin").symlink_to(secret)
    _onnx_with_external(run / "export" / "model.onnx", location)
    proc = cli("predict", run, next(bars.rglob("*.png")), "--backend", "onnx")
    assert_one_line_refusal(proc, "reads external data from", "outside")


def test_onnx_external_data_inside_its_folder_is_accepted(tmp_path):
    path = tmp_path / "m" / "model.onnx"
    _onnx_with_external(path, "w.bin")
    (tmp_path / "m" / "w.bin").write_bytes(struct.pack("<f", 1.0))
    files.check_onnx(path)


# ----------------------------------------------------------------------------- pixel bombs
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def header_only_png(side: int) -> bytes:
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(b"\0" * 16)) + _chunk(b"IEND", b""))


def header_only_jpeg(side: int) -> bytes:
    sof = struct.pack(">BHHB", 8, side, side, 3) + b"".join(bytes([i, 0x11, 0]) for i in (1, 2, 3))
    sos = bytes([3, 1, 0, 2, 0x11, 3, 0x11, 0, 63, 0])
    return (b"\xff\xd8" + b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof
            + b"\xff\xda" + struct.pack(">H", len(sos) + 2) + sos + b"\x00" * 16 + b"\xff\xd9")


BOMBS = {"png-30000": ("png", 30000), "png-60000": ("png", 60000), "jpg-30000": ("jpg", 30000),
         "jpg-60000": ("jpg", 60000)}


def _bomb(name: str) -> bytes:
    fmt, side = BOMBS[name]
    return header_only_png(side) if fmt == "png" else header_only_jpeg(side)


@pytest.mark.parametrize("name", list(BOMBS))
def test_pixel_bombs_are_refused_from_the_header(tmp_path, name):
    with pytest.raises(BadImage, match="decompression bomb"):
        decode(_bomb(name), 3, (16, 16))


def test_pixel_bombs_are_skipped_in_training_and_predict(tmp_path, bars):
    data = shutil.copytree(bars, tmp_path / "data")
    for name in BOMBS:
        fmt, _ = BOMBS[name]
        (data / "a" / f"{name}.{fmt}").write_bytes(_bomb(name))
    proc = cli("train", data, "--out", tmp_path / "run", "--epochs", "1", "--progress", "false",
               "--blocks", "[{filters: 4}]", "--dense", "8")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = (tmp_path / "run" / "skipped.csv").read_text().splitlines()[1:]
    assert sorted(r.split(",")[0].rsplit("/", 1)[1].split(".")[0] for r in rows) == sorted(BOMBS)
    assert all("decompression bomb" in r for r in rows)
    proc = cli("predict", tmp_path / "run", data / "a" / "png-60000.png")
    assert_one_line_refusal(proc, "none of the images could be read")


@pytest.mark.parametrize("name", list(BOMBS))
def test_pixel_bombs_get_422_and_the_server_keeps_serving(tiny_run, name):
    from cnnlab.serving.app import create_app

    client = TestClient(create_app(str(tiny_run)), base_url="http://localhost")
    fmt, _ = BOMBS[name]
    r = client.post("/predict", files=[("files", (f"b.{fmt}", _bomb(name), f"image/{fmt}"))])
    assert r.status_code == 422 and "decompression bomb" in r.json()["detail"]
    assert client.get("/health").status_code == 200


# ----------------------------------------------------------------------------- colours, pinned
def _png(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, **kw)
    return buf.getvalue()


def test_palette_sixteen_bit_cmyk_and_animated_gif_colours_are_pinned():
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    assert decode(_png(palette, format="PNG"), 3, None)[:, 0, 0].tolist() == [200, 100, 50]

    deep = Image.fromarray(np.full((4, 4), 32896, dtype=np.uint16))  # 0x8080: 128 in 8 bits
    assert decode(_png(deep, format="PNG"), 1, None)[0, 0, 0].item() == 128

    cyan = Image.new("CMYK", (4, 4), (255, 0, 0, 0))  # full cyan ink: no red, full green and blue
    assert decode(_png(cyan, format="TIFF"), 3, None)[:, 0, 0].tolist() == [0, 255, 255]

    frames = [Image.new("RGB", (4, 4), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    assert decode(buf.getvalue(), 3, None)[:, 0, 0].tolist() == [255, 0, 0]  # the first frame


def test_exif_orientation_is_the_same_in_training_and_serving(tmp_path):
    from cnnlab.data.datasets import decode_entries
    from cnnlab.data.sources import Entry

    arr = np.zeros((10, 20, 3), dtype=np.uint8)
    arr[:, :10] = 255
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6
    path = tmp_path / "o.jpg"
    img.save(path, exif=exif, quality=95)
    trained, ok, _ = decode_entries([Entry(path, "a")], 1, (20, 10), keep=True)
    served = decode(path.read_bytes(), 1, (20, 10))
    assert ok == [0] and torch.equal(trained[0], served)
    assert served[0, :8].float().mean() > 200  # upright: the white half on top


# ----------------------------------------------------------------------------- missing extras
@pytest.mark.slow  # a process without the extra's modules
@pytest.mark.parametrize("command", [["serve", "{run}"], ["export", "{run}"], ["predict", "{run}", "{image}", "--backend", "onnx"]])
def test_serve_and_export_without_the_serve_extra_name_the_install_command(tiny_run, bars, command):
    args = [a.format(run=tiny_run, image=next(bars.rglob("*.png"))) for a in command]
    code = ("import sys; sys.modules['fastapi'] = None; sys.modules['onnxruntime'] = None; "
            f"sys.argv = ['cnnlab', *{args!r}]; from cnnlab.cli import main; main()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert_one_line_refusal(proc, "needs the serve extra", "pip install 'cnnlab[serve]'")
