"""The training loop's parts on their own: mixed-precision choice, one optimisation step, positions."""

import pytest
import torch

from singleshot.engine.loop import Optimization, Position, amp_dtype, train_one_epoch
from singleshot.predict import precision


def test_amp_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert amp_dtype("auto", cpu) is None and amp_dtype("off", cpu) is None
    monkeypatch.delenv(precision.FORCE_BF16, raising=False)
    monkeypatch.setattr(precision, "bf16_is_native", lambda device: True)
    assert amp_dtype("bf16", cpu) == torch.bfloat16
    monkeypatch.setattr(precision, "bf16_is_native", lambda device: False)  # an AVX2-only CPU: emulated, refused
    with pytest.warns(UserWarning, match=r"--amp bf16: this CPU .* neither AVX512-BF16 nor AMX"):
        assert amp_dtype("bf16", cpu) is None
    monkeypatch.setenv(precision.FORCE_BF16, "1")
    assert amp_dtype("bf16", cpu) == torch.bfloat16
    assert amp_dtype("auto", cuda) == torch.float16 and amp_dtype("off", cuda) is None
    with pytest.raises(ValueError, match="fp16 autocast needs a CUDA device"):
        amp_dtype("fp16", cpu)


class _Quadratic(torch.nn.Module):
    """loss = (w - target)^2 per batch: one SGD step with lr 0.25 moves w halfway (w - 0.5 * (w - t) * 2 * 0.25)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.0))

    def forward(self, images, targets):
        target = torch.stack([t["labels"].float().mean() for t in targets]).mean()
        return {"loss_cls": (self.w - target) ** 2}


def test_epoch_advances_the_position_and_stops_when_asked() -> None:
    model = _Quadratic()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.25)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    optim = Optimization(model, model, optimizer, scheduler, torch.device("cpu"))  # type: ignore[arg-type]
    batch = ([torch.zeros(3, 2, 2)], [{"boxes": torch.zeros(0, 4), "labels": torch.tensor([4])}])
    position = Position(epoch=2, step_in_epoch=0, global_step=10)
    stats = train_one_epoch(optim, [batch] * 5, position, after_step=lambda: position.global_step >= 13, progress=False)
    # w: 0 -> 2 -> 3 -> 3.5 (halfway to 4 each step); losses 16, 4, 1
    assert stats.stopped and (position.step_in_epoch, position.global_step) == (3, 13)
    assert model.w.item() == pytest.approx(3.5)
    assert stats.losses["loss_cls"] == pytest.approx((16 + 4 + 1) / 3)
    assert stats.images == 3
