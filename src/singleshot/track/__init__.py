"""Tracking and counting on top of prediction (the tracker itself runs in :meth:`Detector.track
<singleshot.predict.Detector.track>`, :mod:`singleshot.predict.tracking`):

* :mod:`~singleshot.track.counting`: line crossings per class and direction, zone occupancy and dwell time, on
  tracks' box centres, whatever tracker made them;
* :mod:`~singleshot.track.drawing`: tracks, trails, lines and zones drawn on a frame;
* :mod:`~singleshot.track.outputs`: the run folder's files (annotated video, ``tracks.json``, MOT text,
  ``counts.csv``, ``dwell.csv``);
* :mod:`~singleshot.track.scoring`: HOTA, CLEAR and Identity metrics against MOT ground truth;
* :mod:`~singleshot.track.command`: ``singleshot track``.
"""

from singleshot.track.counting import Line, LineCounter, Zone, ZoneCounter
from singleshot.track.scoring import score_mot

__all__ = ["Line", "LineCounter", "Zone", "ZoneCounter", "score_mot"]
