"""singleshot: SSD, the Single Shot MultiBox Detector (Liu et al., ECCV 2016), in PyTorch."""

from singleshot.models import build, list_models
from singleshot.predict import Detector, Result, load
from singleshot.ssd import SSD
from singleshot.version import __version__

__all__ = ["SSD", "Detector", "Result", "__version__", "build", "list_models", "load"]
