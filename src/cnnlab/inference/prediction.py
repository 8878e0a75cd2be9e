"""What a prediction is: the one document that ``Predictor.predict`` returns, ``cnnlab predict`` prints and
``POST /predict`` answers (its OpenAPI schema too), and the threshold that marks one uncertain. No torch here:
the serving options and the CLI read it before anything heavy is imported."""
from __future__ import annotations

import math
from typing import Annotated, Optional, Union

from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from cnnlab.errors import OutOfRange

TOP_K = 5  # classes listed in each prediction unless asked otherwise


class TopK(TypedDict):
    """A plain dict (``top["label"]``), described for the API's schema."""

    label: Annotated[str, Field(description="a class name")]
    probability: Annotated[float, Field(description="softmax probability, in [0, 1]")]


class Prediction(BaseModel):
    """One image's prediction. ``path`` is served as ``filename``: the upload's name."""

    path: Optional[str] = Field(serialization_alias="filename",
                                description="the upload's file name (null for a raw body)")
    label: Union[str, float, None] = Field(
        description="the top class, or the predicted value for a regression model; null when uncertain")
    probability: Optional[float] = Field(description="the top class's calibrated probability (null for regression)")
    top_k: list[TopK] = Field(default_factory=list, description="the most probable classes, most probable first")
    uncertain: bool = Field(False, description="the top probability is below the threshold: no label is given")

    def to_dict(self) -> dict:
        """As the Python API names its fields (``path``)."""
        return self.model_dump()


class PredictResponse(BaseModel):
    predictions: list[Prediction] = Field(description="one per image, in the order sent")


def check_threshold(value: Union[float, str, None]) -> Optional[float]:
    """The one check of a threshold, from a flag, a Python call or a request's text: None, or a probability
    strictly between 0 and 1. ``OutOfRange`` otherwise (the server's 422)."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not 0 < number < 1:  # NaN fails it too
        raise OutOfRange(f"threshold {value}: a probability strictly between 0 and 1 (e.g. 0.8)")
    return number
