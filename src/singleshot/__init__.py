"""singleshot: SSD, the Single Shot MultiBox Detector (Liu et al., ECCV 2016), in PyTorch."""

from singleshot.models import build, list_models
from singleshot.ssd import SSD

__version__ = "0.1.0"
__all__ = ["SSD", "__version__", "build", "list_models"]
