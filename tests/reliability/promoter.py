"""A promoter process for the concurrency test: ``promoter.py LAKE SEED ROUNDS GO`` waits
until the file GO exists, then ROUNDS times does the registry's read-judge-write under the
champion lock: read the champion, judge a randomly drawn candidate against it on the MASE its
card's evidence records (lower wins; now and then the champion is retired instead), and move
the pointer. A candidate whose checkpoint does not load is refused by ``set_champion``;
the refusal is counted. Prints ``{"promoted", "retired", "refused"}`` as JSON."""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

from kline import registry
from kline.lake import Lake

NAME = "lstm"


def main(lake_root: str, seed: int, rounds: int, go: str) -> dict[str, int]:
    lake = Lake(lake_root)
    rng = random.Random(seed)
    versions = registry.list_versions(lake, NAME)
    mase = {v: registry.read_card(lake, NAME, v)["evidence"]["metrics"]["mase"] for v in versions}
    counts = {"promoted": 0, "retired": 0, "refused": 0}
    while not Path(go).exists():
        time.sleep(0.005)
    for _ in range(rounds):
        candidate = rng.choice(versions)
        with registry.champion_lock(lake, NAME):
            champ = registry.get_champion(lake, NAME)
            time.sleep(rng.uniform(0, 0.01))  # judging takes a while: the other promoter gets its chance
            if champ and rng.random() < 0.15:
                registry.retire_champion(lake, NAME, {"reason": "test: retired", "sessions": 1})
                counts["retired"] += 1
            elif champ is None or mase[candidate] < mase[champ["version"]]:
                try:
                    registry.set_champion(lake, NAME, candidate, {"mase": mase[candidate]})
                    counts["promoted"] += 1
                except registry.CheckpointError:
                    counts["refused"] += 1
        time.sleep(rng.uniform(0, 0.005))
    return counts


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])))
