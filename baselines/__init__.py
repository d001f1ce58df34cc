"""Direct predictors that are not energy descent, behind the same `Predictor` interface.

configs/baseline/ names them for Hydra (`irem-train baseline=pondernet`).
"""

from baselines.feedforward import FeedForward
from baselines.gnn import GNNFeedForward, GNNRecurrent
from baselines.pondernet import PonderNet
from baselines.recurrent import Recurrent
from baselines.residual import IterativeResidual

__all__ = ["FeedForward", "GNNFeedForward", "GNNRecurrent", "IterativeResidual", "PonderNet", "Recurrent"]
