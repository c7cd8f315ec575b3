import argparse
import dataclasses

import pytest

from singleshot.cli import make_parser
from singleshot.config import add_config_flags, resolve
from singleshot.deploy.command import ExportConfig
from singleshot.engine.recipe import TrainConfig
from singleshot.evaluation.command import ValConfig
from singleshot.speed import BenchmarkConfig


def _parse(*argv: str) -> TrainConfig:
    parser = argparse.ArgumentParser()
    add_config_flags(parser, TrainConfig)
    return resolve(TrainConfig, parser.parse_args(list(argv)))


def test_unknown_key_gets_a_did_you_mean(tmp_path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("epochs: 3\nlearning_rate: 0.1\nbatch_size: 4\n")
    with pytest.raises(ValueError, match=r"unknown key\(s\) 'learning_rate', 'batch_size' \(did you mean 'batch'\?\)"):
        TrainConfig.from_yaml(recipe)
    recipe.write_text("epochz: 3\n")
    with pytest.raises(ValueError, match=r"'epochz' \(did you mean 'epochs'\?\)"):
        TrainConfig.from_yaml(recipe)


def test_types_are_checked() -> None:
    with pytest.raises(ValueError, match="'epochs' must be int, got '3'"):
        TrainConfig.from_dict({"epochs": "3"})
    with pytest.raises(ValueError, match="'schedule' must be one of 'cosine', 'multistep'"):
        TrainConfig.from_dict({"schedule": "linear"})
    with pytest.raises(ValueError, match="invalid training config: batch=0"):
        TrainConfig.from_dict({"batch": 0})
    assert TrainConfig.from_dict({"lr": 1}).lr == 1.0


def test_defaults_then_yaml_then_flags(tmp_path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("epochs: 3\nbatch: 4\nmilestones: [0.5, 0.75]\nema: false\n")
    config = _parse("--config", str(recipe), "--batch", "8", "--schedule", "multistep", "--no-exist-ok")
    assert (config.epochs, config.batch, config.schedule, config.milestones, config.ema) == (
        3, 8, "multistep", [0.5, 0.75], False,
    )  # fmt: skip
    assert config.lr == TrainConfig().lr
    assert _parse("--ema", "--classes", "a", "b").classes == ["a", "b"]


def test_config_round_trips_through_yaml(tmp_path) -> None:
    config = TrainConfig(epochs=7, classes=["x"], imgsz=256)
    config.save_yaml(tmp_path / "c.yaml")
    assert TrainConfig.from_yaml(tmp_path / "c.yaml") == config


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = make_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


@pytest.mark.parametrize("command", ["train", "val", "predict", "export", "benchmark", "check-data", "models"])
def test_every_flag_has_a_sentence_of_help(command: str) -> None:
    parser = _subcommands()[command]
    actions = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
    assert len(actions) >= 2
    for action in actions:
        text = (action.help or "").split(" (default:")[0]
        assert len(text.split()) >= 3, f"{command} {action.option_strings or action.dest}: help {action.help!r}"
    shown = parser.format_help()
    assert "(default:" in shown


def test_train_and_val_flags_are_the_config_fields() -> None:
    commands = _subcommands()
    configs = {"train": TrainConfig, "val": ValConfig, "export": ExportConfig, "benchmark": BenchmarkConfig}
    for command, cls in configs.items():
        dests = {a.dest for a in commands[command]._actions} - {"help", "config"}
        assert dests == {f.name for f in dataclasses.fields(cls)}, command
    augment = next(a for a in commands["train"]._actions if a.dest == "augment")
    assert augment.choices == ["ssd", "ssdlite", "eval"]  # a typed choice, not a free string
    backends = next(a for a in commands["benchmark"]._actions if a.dest == "backends")
    assert backends.choices == ["torch-fp32", "torch-bf16", "ort-fp32", "ort-int8", "ov-fp32", "ov-int8"]
    assert backends.nargs == "+"
    args = make_parser().parse_args(["benchmark", "--weights", "w.safetensors", "--backends", "ort-fp32", "ort-int8"])
    assert resolve(BenchmarkConfig, args).backends == ["ort-fp32", "ort-int8"]
    with pytest.raises(SystemExit):  # not a backend
        make_parser().parse_args(["benchmark", "--weights", "w", "--backends", "tensorrt"])


def test_export_int8_needs_data() -> None:
    with pytest.raises(ValueError, match=r"--int8 needs --data"):
        ExportConfig(weights="w.safetensors", int8=True).validate()


def test_val_config_from_the_command_line() -> None:
    args = make_parser().parse_args(["val", "--weights", "w.safetensors", "--no-coco", "--batch", "4"])
    config = resolve(ValConfig, args)
    assert (config.weights, config.coco, config.batch, config.split) == ("w.safetensors", False, 4, "val")
    with pytest.raises(ValueError, match=r"missing required key.*weights"):
        ValConfig.from_dict({"batch": 2})
    with pytest.raises(ValueError, match="invalid val config: batch=0"):
        ValConfig.from_dict({"weights": "w", "batch": 0})
