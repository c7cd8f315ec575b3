"""End to end: training on synthetic shapes, checkpoints and resuming, the run folder, DDP with gloo."""

import csv
from pathlib import Path

import pytest
import torch
import yaml
from conftest import run_ranks

from singleshot.data import synthetic_bundle
from singleshot.engine.checkpoint import load_checkpoint, save_checkpoint
from singleshot.engine.ema import ModelEMA
from singleshot.engine.recipe import TrainConfig
from singleshot.engine.trainer import train
from singleshot.evaluation import evaluate_model
from singleshot.metrics import class_thresholds, threshold_vector
from singleshot.models import build
from singleshot.predict import Detector
from singleshot.predict.loading import load_model


def _config(tmp_path: Path, **overrides) -> TrainConfig:
    base = dict(
        model="ssd_tiny160", imgsz=96, augment="eval", synthetic_train=24, synthetic_val=8, epochs=2, batch=8,
        lr=0.05, workers=0, project=str(tmp_path), name="run", exist_ok=True, predict_images=2,
    )  # fmt: skip
    base.update(overrides)
    return TrainConfig(**base)


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.slow
@pytest.mark.numeric
def test_run_folder_and_resume_match_an_uninterrupted_run(tmp_path: Path) -> None:
    full = train(_config(tmp_path / "a"), progress=False)
    run = full.run_dir
    for name in ("config.yaml", "metrics.csv", "results.png", "train_batch.jpg", "last.pt"):
        assert (run / name).is_file(), name
    assert (run / "weights" / "last.safetensors").is_file() and (run / "weights" / "best.safetensors").is_file()
    assert len(list((run / "predictions").glob("*.jpg"))) == 2
    assert any(p.name.startswith("events.out.tfevents") for p in run.iterdir())
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"] and rows[-1]["map50"] != "" and rows[-1]["map"] != ""
    assert yaml.safe_load((run / "config.yaml").read_text())["model"] == "ssd_tiny160"
    assert full.global_step == 6

    # stopped after 4 steps (mid-epoch 2), then resumed: the same weights as without the stop
    stopped = train(_config(tmp_path / "b", max_steps=4), progress=False)
    assert stopped.global_step == 4
    stopped_weights, _ = load_model(stopped.run_dir / "weights" / "last.safetensors")  # nothing lost at a stop
    _same(stopped_weights.state_dict(), stopped.model.state_dict())
    state = load_checkpoint(stopped.run_dir / "last.pt")
    assert (state["epoch"], state["step_in_epoch"]) == (1, 1)
    resumed = train(TrainConfig(resume=str(stopped.run_dir)), progress=False)
    assert resumed.global_step == 6
    _same(load_checkpoint(run / "last.pt")["model"], load_checkpoint(stopped.run_dir / "last.pt")["model"])
    _same(full.model.state_dict(), resumed.model.state_dict())  # the EMA weights too

    # user weights rebuild the model with nothing else
    model, classes = load_model(run / "weights" / "last.safetensors")
    assert classes == ["circle", "square", "triangle"] and model.preprocessing.image_size == (96, 96)
    _same(model.state_dict(), full.model.state_dict())


@pytest.mark.slow
@pytest.mark.numeric
def test_best_and_last_carry_the_thresholds_of_their_own_evaluation(tmp_path: Path, capsys) -> None:
    result = train(_config(tmp_path, eval_every=1, predict_images=0, synthetic_val=16), progress=False)
    weights = result.run_dir / "weights"
    assert result.thresholds is not None and [t.name for t in result.thresholds] == ["circle", "square", "triangle"]
    last, _ = load_model(weights / "last.safetensors")
    assert last.postprocess.class_conf == threshold_vector(result.thresholds)  # the final evaluation's
    assert any(t is not None for t in last.postprocess.class_conf)
    printed = capsys.readouterr().out
    assert "per-class score thresholds" in printed and "F1 @0.25" in printed
    assert all(f"\n{t.name} " in printed for t in result.thresholds)
    # best (epoch 1 or 2): the thresholds of evaluating the very weights it holds
    best, _ = load_model(weights / "best.safetensors")
    data = synthetic_bundle(24, 16, (96, 96), seed=0)
    report = evaluate_model(best, data.val, torch.device("cpu"), batch=8, coco=False).report
    assert best.postprocess.class_conf == threshold_vector(class_thresholds(report))
    assert best.postprocess.settings == build("ssd_tiny160", 3).postprocess.settings  # evaluation's own, unchanged

    stopped = train(_config(tmp_path / "stop", max_steps=2), progress=False)  # no evaluation before it stopped
    assert stopped.thresholds is None
    assert load_model(stopped.run_dir / "weights" / "last.safetensors")[0].postprocess.class_conf is None


def test_checkpoint_survives_a_crash_while_writing(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint({"step": torch.tensor(1)}, path)

    def crash(obj, f):
        Path(f).write_bytes(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"step": torch.tensor(2)}, path)
    assert load_checkpoint(path)["step"].item() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_ema_follows_in_place_updates_by_hand() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.BatchNorm1d(1))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    ema = ModelEMA(model, decay=0.5, tau=1e-9)  # decay warm-up done at once: d = 0.5
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    for target in (3.0, 5.0):  # in-place changes, as an optimizer makes them
        model[0].weight.grad = model[0].weight.detach() - target
        optimizer.step()
        model[1].num_batches_tracked += 1
        ema.update(model)
    # weight: 1 -> 3 -> 5; average: 0.5 * 1 + 0.5 * 3 = 2, then 0.5 * 2 + 0.5 * 5 = 3.5
    assert torch.allclose(ema.module[0].weight, torch.full((1, 2), 3.5))
    assert int(ema.module[1].num_batches_tracked) == 2  # integer buffers are copied, not averaged


@pytest.mark.slow
def test_nonfinite_loss_stops_with_a_message(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"non-finite loss .* epoch 1, step \d+ .*batch image ids \["):
        train(_config(tmp_path, lr=1e12, grad_clip=0.0, epochs=3), progress=False)


@pytest.mark.slow
@pytest.mark.numeric
def test_training_beats_the_untrained_model(tmp_path: Path) -> None:
    config = _config(tmp_path, imgsz=128, synthetic_train=480, synthetic_val=64, epochs=5, batch=16, lr=0.1)
    data = synthetic_bundle(480, 64, (128, 128), seed=0)
    torch.manual_seed(0)
    cpu = torch.device("cpu")
    untrained = evaluate_model(build("ssd_tiny160", 3, image_size=128), data.val, cpu).report.map50_07
    result = train(config, progress=False)
    trained = evaluate_model(result.model, data.val, cpu, coco=False).report.map50_07
    # measured: untrained 0.001, trained 0.175 (2 CPU cores, 150 steps); asserted with a 2x margin
    assert untrained < 0.02
    assert trained > 0.08, (untrained, trained)


def _ddp_worker(rank: int, root: str) -> None:
    config = _config(Path(root), epochs=1, synthetic_train=32, batch=4, predict_images=0, ema=False)
    result = train(config, progress=False)  # without EMA: result.model is the DDP-trained model itself
    torch.save(result.model.state_dict(), Path(root) / f"rank{rank}.pt")
    torch.save(result.global_step, Path(root) / f"steps{rank}.pt")


@pytest.mark.slow
@pytest.mark.numeric
def test_two_process_ddp_ends_with_identical_weights(tmp_path: Path) -> None:
    run_ranks(_ddp_worker, 2, str(tmp_path))
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    _same(a, b)
    assert torch.load(tmp_path / "steps0.pt") == 4  # 32 images / 2 ranks / batch 4
    untrained = build("ssd_tiny160", 3, image_size=96).state_dict()
    assert not torch.equal(a["head.cls.0.weight"], untrained["head.cls.0.weight"])


@pytest.mark.slow
def test_tile_training_crops_tiles_and_validates_sliced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--tile 64`` on 96-pixel synthetic images: the training samples are tiles resized to the input, and the
    evaluation that picks ``best`` runs sliced inference at 64 pixels (2 x 2 tiles and the whole image)."""
    sliced: list[float] = []
    original = Detector.detect_sliced

    def counting(self: Detector, *args: object, **kwargs: object) -> tuple:
        detection, ms = original(self, *args, **kwargs)  # type: ignore[arg-type]  # passed through
        sliced.append(ms["tiles"])
        return detection, ms

    monkeypatch.setattr(Detector, "detect_sliced", counting)
    result = train(_config(tmp_path, tile=64, eval_every=1, predict_images=0), progress=False)
    assert result.best_map50 >= 0 and (result.run_dir / "weights" / "best.safetensors").is_file()
    assert len(sliced) == 2 * 8 and set(sliced) == {5.0}  # 2 evaluations of the 8 val images, 5 windows each
    with pytest.raises(ValueError, match="tile=0 must be >= 1"):
        _config(tmp_path, tile=0).validate()
