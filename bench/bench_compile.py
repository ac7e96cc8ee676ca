"""A new process's nutpie compile of the seed model: what `forecast fit` pays before sampling.

Builds the model of data/episodes.csv with the default priors and compiles it for nutpie
(`sampling.compile_nutpie`), printing the seconds of each. Run it alternately against two
checkouts to compare them (SRC names the checkout whose `forecasting` package is imported):

    PYTENSOR_FLAGS=base_compiledir=.cache/pytensor .venv/bin/python bench/bench_compile.py
    SRC=/tmp/base PYTENSOR_FLAGS=base_compiledir=.cache/pytensor .venv/bin/python bench/bench_compile.py
"""

import os
import sys
import time
from pathlib import Path

t0 = time.perf_counter()
ROOT = Path(os.environ.get("SRC", Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(ROOT))

from forecasting.domain.cells import aggregate, episodes_frame  # noqa: E402
from forecasting.domain.codebook import load_codebook  # noqa: E402
from forecasting.domain.interchange import read_episodes  # noqa: E402
from forecasting.model.priors import load_priors  # noqa: E402
from forecasting.model.pymc_model import build_model  # noqa: E402
from forecasting.model.sampling import compile_nutpie  # noqa: E402

codebook = load_codebook(ROOT / "data" / "codebook.toml")
episodes = episodes_frame(read_episodes(ROOT / "data" / "episodes.csv", codebook))
model = build_model(aggregate(episodes, codebook), load_priors(ROOT / "priors" / "default.toml"))
t1 = time.perf_counter()
compile_nutpie(model)
print(f"{ROOT}: imports and build {t1 - t0:.1f} s, compile {time.perf_counter() - t1:.1f} s")
