"""Training steps (forward, loss, backward, optimizer) on one device or many.

>>> from dnnmap.training import train_step, StepMemory
"""

from dnnmap.training.memory import StepMemory, step_memory
from dnnmap.training.step import TrainEstimate, train_step

__all__ = ["StepMemory", "TrainEstimate", "step_memory", "train_step"]
