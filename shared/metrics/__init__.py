"""torchmetrics Metrics shared by the projects."""

from shared.metrics.means import StageMeans

__all__ = ["StageMeans"]
