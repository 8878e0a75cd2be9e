"""Prediction from a run directory. Imports torch and the model definitions only (no Lightning)."""
from cnnlab.inference.predictor import Prediction, Predictor, load

__all__ = ["Prediction", "Predictor", "load"]
