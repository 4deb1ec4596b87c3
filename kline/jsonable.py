"""One way to make results JSON-able: cards, summaries, GX observations, metrics.json."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np


def jsonable(x: Any) -> Any:
    """Plain, strict-JSON copy: dict keys as strings, numpy scalars and arrays as Python values,
    dates as ISO strings, NaN/inf as None, anything else unknown as its ``str``."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return [jsonable(v) for v in x.tolist()]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dt.date):
        return x.isoformat()
    if isinstance(x, float | int | str | bool) or x is None:
        return x
    return str(x)
