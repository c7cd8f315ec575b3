"""Progress: a bar on a terminal, a plain line every few seconds elsewhere, never carriage-return floods."""

import io

from singleshot.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_not_a_terminal_prints_plain_lines_at_an_interval() -> None:
    log = io.StringIO()
    seen = list(Progress(range(5), desc="epoch 1", stream=log, interval=0.0))
    assert seen == [0, 1, 2, 3, 4]
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("epoch 1: 1/5 ") and lines[-1].startswith("epoch 1: 5/5 ")
    assert "\r" not in log.getvalue()


def test_quick_work_prints_nothing_and_disabled_prints_nothing() -> None:
    log = io.StringIO()
    assert sum(Progress(range(100), desc="x", stream=log)) == 4950  # all within the 30 s interval
    assert sum(Progress(range(3), stream=log, enabled=False, interval=0.0)) == 3
    assert log.getvalue() == ""


def test_postfix_appears_in_the_line_and_a_terminal_gets_a_bar() -> None:
    log = io.StringIO()
    bar = Progress(range(2), total=2, desc="val", stream=log, interval=0.0)
    for _ in bar:
        bar.set_postfix({"loss": "1.500"})
    assert "loss 1.500" in log.getvalue().splitlines()[-1]
    terminal = _Terminal()
    assert list(Progress(range(3), desc="bar", stream=terminal)) == [0, 1, 2]
    assert "\r" in terminal.getvalue() and "bar" in terminal.getvalue()  # tqdm drew on the terminal
