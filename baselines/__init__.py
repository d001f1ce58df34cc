"""Direct predictors that are not energy descent, behind the same `Predictor` interface.

configs/baseline/ names them for Hydra (`irem-train baseline=pondernet`).
"""

from irem.baselines.feedforward import FeedForward
from irem.baselines.gnn import GNNFeedForward, GNNRecurrent
from irem.baselines.pondernet import PonderNet
from irem.baselines.recurrent import Recurrent
from irem.baselines.residual import IterativeResidual

__all__ = ["FeedForward", "GNNFeedForward", "GNNRecurrent", "IterativeResidual", "PonderNet", "Recurrent"]
