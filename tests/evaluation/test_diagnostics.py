
import cnnlab
from cnnlab import rundir
from cnnlab.evaluation.diagnostics import deep_cnn, vanishing_gradients
from conftest import TINY


def test_plain_deep_sigmoid_net_vanishes_and_residual_does_not():
    exp = vanishing_gradients(depth=12, activation="sigmoid", steps=2)
    assert len(exp.plain) == len(exp.residual) == 12
    assert exp.ratio("plain") < 1e-6  # shrinks by orders of magnitude towards the input
    assert exp.ratio("residual") > 1e-2  # the identity paths carry it back
    assert exp.plain[0] < exp.plain[-1] / 1e6


def test_deep_cnn_has_the_asked_depth():
    model = deep_cnn(8, "tanh", residual=True)
    assert sum(1 for n, _ in model.named_modules() if n.endswith("body.0.0")) == 8


def test_training_records_gradient_norms_per_layer(tmp_path, bars):
    result = cnnlab.train(bars, tmp_path / "run", epochs=2, gradient_every=2, batch_size=8, **TINY)
    rows = rundir.read_csv(result.run_dir / "gradients.csv")
    assert [int(r["step"]) for r in rows] == list(range(0, 2 * 6, 2))  # 60 - 6 val - 6 test: 48 / 8 = 6 steps
    layers = [k for k in rows[0] if k not in ("step", "epoch")]
    assert layers[0] == "net.features.0.body.0.0" and layers[-1] == "net.head.3"
    assert all(float(rows[0][k]) > 0 for k in layers)


def test_vanishing_gradient_warning(tmp_path, bars, caplog):
    deep = [{"filters": 4, "pool": "none"}] * 12
    cnnlab.train(bars, tmp_path / "run", epochs=1, gradient_every=1, activation="sigmoid", batch_norm=False,
                 progress=False, blocks=deep, dense=[8], dropout=0.0)
    warned = [r for r in caplog.records if "likely vanishing gradients" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelname == "WARNING" and warned[0].name.startswith("cnnlab.")
