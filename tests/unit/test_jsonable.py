import datetime as dt
import json

import numpy as np

from kline.jsonable import jsonable


def test_jsonable_is_strict_json():
    x = {1: np.float64("nan"), "d": dt.date(2024, 1, 2), "a": np.arange(3), "t": (np.int64(4), float("inf")),
         "o": object}
    out = jsonable(x)
    assert out == {"1": None, "d": "2024-01-02", "a": [0, 1, 2], "t": [4, None], "o": str(object)}
    json.dumps(out, allow_nan=False)
