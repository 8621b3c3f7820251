"""Run a deterministic backend over a dataset into a store (killed by test_store)."""

import hashlib
import sys
import time

from ptychobench.data import load_dataset
from ptychobench.eval.predict import predict
from ptychobench.eval.store import PredictionStore
from ptychobench.models.base import Generation
from ptychobench.tasks import PARAM_OPTIONS, get_task


class HashBackend:
    """Replies are a pure function of the prompt, so any two runs must agree."""

    def fingerprint(self):
        return {"model": "hash"}

    def generate(self, batch, config):
        out = []
        for conv in batch:
            time.sleep(float(sys.argv[3]))
            h = hashlib.sha256(repr(conv).encode()).digest()
            letters = [k for i, k in enumerate(PARAM_OPTIONS) if h[i] % 5 == 0]
            out.append(Generation(text=f"<answer>{', '.join(letters)}</answer>" if h[30] % 7 else "no idea"))
        return out


if __name__ == "__main__":
    ds = load_dataset(sys.argv[1])
    store = PredictionStore(sys.argv[2])
    task = get_task("params")
    samples = ds.samples("params", "test") + ds.samples("params", "train")
    for k in (0, 1):
        pool = ds.samples("params", "train")
        predict(
            task,
            samples,
            HashBackend(),
            store,
            f"hash/k{k}",
            {"k": k},
            demos_for=(lambda s: [d for d in pool if d.id != s.id][:k]),
            batch_size=2,
        )
