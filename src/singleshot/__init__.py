"""singleshot: SSD, the Single Shot MultiBox Detector (Liu et al., ECCV 2016), in PyTorch."""

__version__ = "0.1.0"  # first: singleshot.weights records it in every weight file it writes

from singleshot.models import build, list_models
from singleshot.predict import Detector, Result, load
from singleshot.ssd import SSD

__all__ = ["SSD", "Detector", "Result", "__version__", "build", "list_models", "load"]
