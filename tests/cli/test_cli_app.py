"""cli/app.py and the entry point in cli/__init__.py: the Typer application, the flag parser every command
shares, the config epilog of --help, the command to suggest, and how an error reaches a person."""
import importlib
from importlib.metadata import version
from pathlib import Path

import pytest

from cnnlab.errors import CnnlabError, ConfigError, Interrupted

app_mod = importlib.import_module("cnnlab.cli.app")  # the package's ``app`` attribute is the Typer object


def test_version_prints_the_installed_version(cli):
    found = cli("--version")
    assert found.code == 0
    assert found.out.strip() == f"cnnlab {version('cnnlab')}"


def test_no_arguments_show_every_command_and_group(cli):
    found = cli()
    assert found.code != 0  # click: no arguments is a usage error that shows the help
    for name in ("train", "lr-find", "evaluate", "predict", "summary", "config", "datasets", "diagnose", "plot",
                 "augment", "experiment"):
        assert f" {name} " in found.out + found.err, name


@pytest.mark.parametrize("args,expected", [
    (["--lr", "0.01"], {"lr": 0.01}),
    (["--lr=0.01"], {"lr": 0.01}),
    (["--dense", "64,32"], {"dense": [64, 32]}),
    (["--blocks", "[{filters: 4}]"], {"blocks": [{"filters": 4}]}),
    (["--progress", "false", "--name", "x y"], {"progress": False, "name": "x y"}),
    (["--pin", "--epochs", "3"], {"pin": True, "epochs": 3}),  # a flag followed by another flag is true
    (["--tail"], {"tail": True}),
    (["--lr", "{oops"], {"lr": "{oops"}),  # not YAML: the text itself, for the config to judge
])
def test_parse_extra_reads_each_value_as_yaml(args, expected):
    assert app_mod.parse_extra(args) == expected


def test_parse_extra_names_a_stray_argument():
    with pytest.raises(CnnlabError, match=r"unexpected argument 'stray': config flags look like --key value"):
        app_mod.parse_extra(["--lr", "0.1", "stray"])


def test_a_stray_argument_is_one_line_and_exit_2(cli, tmp_path):
    found = cli("datasets", "export", "shapes", tmp_path / "s", "stray")
    assert found.code == 2
    assert found.err_lines == ["error: unexpected argument 'stray': config flags look like --key value "
                               "(see: cnnlab config)"]
    assert not (tmp_path / "s").exists()


def test_config_epilog_lists_every_key_but_the_commands_own():
    from cnnlab.flags import key_docs

    epilog = app_mod._config_epilog()
    lines = epilog.splitlines()
    flags = [line.split()[0] for line in lines if line.startswith("  --")]
    expected = [f"--{d.name.replace('_', '-')}" for d in key_docs() if d.name not in ("path", "name", "epochs")]
    assert sorted(flags) == sorted(set(flags)) and len(flags) == len(expected)
    assert set(flags) - set(expected) == {"--augment"}  # augment.preset: shown by its alias, the other named after
    assert any(line.startswith("  --augment (or --preset) ") for line in lines)
    assert "(default True)" not in epilog and "(default False)" not in epilog  # YAML spelling for booleans
    assert "(default true)" in epilog


def test_train_and_lr_find_help_carry_the_epilog(cli):
    for command in ("train", "lr-find"):
        found = cli(command, "--help")
        assert found.code == 0
        assert "Every config key is a flag" in found.out and "--rotation" in found.out


def _venv(tmp_path: Path, monkeypatch) -> Path:
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "cnnlab").write_text("")
    monkeypatch.setattr(app_mod.sys, "executable", str(bin_dir / "python"))
    return bin_dir


def test_command_is_cnnlab_when_the_path_finds_this_one(tmp_path, monkeypatch):
    bin_dir = _venv(tmp_path, monkeypatch)
    monkeypatch.setattr("shutil.which", lambda name: str(bin_dir / name))
    assert app_mod._command() == "cnnlab"


def test_command_is_a_path_when_the_path_finds_another_or_none(tmp_path, monkeypatch):
    bin_dir = _venv(tmp_path, monkeypatch)
    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/cnnlab")
    monkeypatch.chdir(tmp_path)
    assert app_mod._command() == str(Path("venv/bin/cnnlab"))  # relative to the working folder
    monkeypatch.setattr("shutil.which", lambda name: None)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert app_mod._command() == str(bin_dir / "cnnlab")  # not below the working folder: the whole path


# ----------------------------------------------------------------------------- main(): errors reach a person
def _raising(monkeypatch, exc):
    def build_report(run, data):
        raise exc

    monkeypatch.setattr("cnnlab.evaluation.report.build_report", build_report)


def test_a_cnnlab_error_is_one_red_line_and_exit_2(cli, monkeypatch, tmp_path):
    _raising(monkeypatch, ConfigError("bad [value] here: use another"))
    found = cli("report", tmp_path)
    assert found.code == 2
    assert found.err_lines == ["error: bad [value] here: use another"]  # markup in the message is shown as text
    assert found.out == ""


def test_debug_shows_the_traceback_instead(cli, monkeypatch, tmp_path):
    _raising(monkeypatch, ConfigError("bad value"))
    with pytest.raises(ConfigError, match="bad value"):
        cli("--debug", "report", tmp_path)


def test_interrupted_exits_130_with_its_message(cli, monkeypatch, tmp_path):
    _raising(monkeypatch, Interrupted("stopped at epoch 2: cnnlab train --resume --out r"))
    found = cli("report", tmp_path)
    assert found.code == 130
    assert found.err_lines == ["stopped at epoch 2: cnnlab train --resume --out r"]


def test_ctrl_c_exits_130(cli, monkeypatch, tmp_path):
    _raising(monkeypatch, KeyboardInterrupt())
    found = cli("report", tmp_path)
    assert found.code == 130 and "Traceback" not in found.err


def test_a_bug_is_not_hidden_as_a_one_line_error(cli, monkeypatch, tmp_path):
    _raising(monkeypatch, RuntimeError("a bug"))
    with pytest.raises(RuntimeError, match="a bug"):
        cli("report", tmp_path)
