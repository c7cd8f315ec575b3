"""Tracking and counting. :mod:`~singleshot.track.counting`: line crossings per class and direction, zone
occupancy and dwell time, on tracks' box centres, whatever tracker made them."""

from singleshot.track.counting import Line, LineCounter, Zone, ZoneCounter

__all__ = ["Line", "LineCounter", "Zone", "ZoneCounter"]
