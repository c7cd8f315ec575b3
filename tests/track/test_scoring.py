"""MOT scoring through the established evaluator (the ``trackers`` package's TrackEval port), on files checkable by
hand."""

from pathlib import Path

import pytest

from singleshot.track.scoring import SUMMARY, score_mot, summary_line


def _write(path: Path, rows: list[tuple[int, int, float]]) -> Path:
    """``(frame, id, x)`` rows of 10x10 boxes at ``(x, 0)``, in MOT text."""
    path.write_text("".join(f"{f},{i},{x},0,10,10,1,1,1\n" for f, i, x in rows))
    return path


def test_perfect_tracks_and_an_id_swap(tmp_path: Path) -> None:
    # two objects, 10 frames, far apart; the tracker swaps their ids from frame 6 on
    truth = [(f, i, 100.0 * i) for f in range(1, 11) for i in (1, 2)]
    gt = _write(tmp_path / "gt.txt", truth)
    assert score_mot(gt, gt)["summary"] == {
        "HOTA": 1.0, "DetA": 1.0, "AssA": 1.0, "MOTA": 1.0, "IDF1": 1.0, "IDSW": 0, "Frag": 0,
        "CLR_TP": 20, "CLR_FN": 0, "CLR_FP": 0,
    }  # fmt: skip
    swapped = _write(tmp_path / "swapped.txt", [(f, (3 - i) if f >= 6 else i, x) for f, i, x in truth])
    scores = score_mot(gt, swapped)
    s = scores["summary"]
    # each object changes id once: 2 switches; the best one-to-one id matching holds 5 of each object's 10 frames
    assert s["IDSW"] == 2 and s["IDF1"] == pytest.approx(0.5) and s["CLR_TP"] == 20
    assert s["MOTA"] == pytest.approx(1 - 2 / 20) and s["DetA"] == pytest.approx(1.0) and s["AssA"] < 0.6
    assert set(scores) == {"summary", "HOTA", "CLEAR", "Identity"} and tuple(s) == SUMMARY
    assert "IDF1 50.0" in summary_line(s) and "IDSW 2" in summary_line(s)


def test_missing_and_empty_files_are_named(tmp_path: Path) -> None:
    gt = _write(tmp_path / "gt.txt", [(1, 1, 0.0)])
    with pytest.raises(FileNotFoundError, match=r"nothing\.txt"):
        score_mot(gt, tmp_path / "nothing.txt")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match=r"empty\.txt: no rows"):
        score_mot(gt, tmp_path / "empty.txt")
