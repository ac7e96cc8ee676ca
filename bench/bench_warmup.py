"""Where a fit's sampling time goes: nutpie's leapfrog steps per draw through warmup and after
it, and the time per gradient inside the sampler against the gradient timed alone.

Simulated clustered episodes (as bench_scale.py), model revision 3 as the service builds it
(swept and partly centred from 1,000 triggers), nutpie called on the compiled model with its
warmup kept. Prints the gradient evaluations of warmup and of sampling, the mean steps per
draw in each tenth of warmup, the sampler's milliseconds per gradient (wall time x parallel
chains / gradients) beside the best of 5 x 20 calls of the numba value-and-gradient function
alone, and the slowest quantities' bulk ESS and R-hat.

    PYTENSOR_FLAGS=base_compiledir=.cache/pytensor .venv/bin/python bench/bench_warmup.py \\
        --size 200000 --tune 1000 --draws 1000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_likelihood import best_time, value_and_gradient  # noqa: E402

from forecasting.model.diagnostics import summary_table  # noqa: E402


def gradient_alone(model) -> float:
    """Best time of one value-and-gradient call (numba, as nutpie compiles it), seconds."""
    fn, x = value_and_gradient(model)
    return best_time(fn, (x,), rounds=5, calls=20)


def main(argv=None) -> int:
    import nutpie

    from forecasting.domain.cells import aggregate
    from forecasting.domain.codebook import load_codebook
    from forecasting.evaluation.simulate import simulate_episodes
    from forecasting.model.priors import load_priors
    from forecasting.model.pymc_model import build_model
    from forecasting.model.sampling import compile_nutpie

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=200_000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--target-accept", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    codebook = load_codebook(ROOT / "data" / "codebook.toml")
    priors = load_priors(ROOT / "priors" / "default.toml")
    episodes, _ = simulate_episodes(codebook, args.size, seed=args.seed)
    model = build_model(aggregate(episodes, codebook), priors)
    alone = gradient_alone(model)
    compiled = compile_nutpie(model)
    t0 = time.perf_counter()
    tree = nutpie.sample(compiled, draws=args.draws, tune=args.tune, chains=args.chains,
                         cores=args.cores, seed=args.seed, target_accept=args.target_accept,
                         progress_bar=False, save_warmup=True)
    sampling = time.perf_counter() - t0
    warm = tree["warmup_sample_stats"]["n_steps"].values  # chain x draw
    after = tree["sample_stats"]["n_steps"].values
    total = int(warm.sum() + after.sum())
    in_sampler = sampling * min(args.cores, args.chains) / total
    tenth = max(args.tune // 10, 1)
    windows = [float(warm[:, a:a + tenth].mean()) for a in range(0, args.tune, tenth)]
    table = summary_table(tree)
    table = table[table["sd"] > 1e-12]
    config = model.forecast_config
    print(f"{args.size:,} episodes, {args.chains} x {args.draws} draws after {args.tune}, "
          f"target acceptance {args.target_accept}; swept: {bool(config.get('swept'))}, "
          f"partly centred: {bool(config.get('centred_triggers'))}")
    print(f"sampling {sampling:.0f} s; gradients: warmup {int(warm.sum()):,}, after "
          f"{int(after.sum()):,} ({warm.sum() / after.sum():.2f}x)")
    print("mean steps per draw, each tenth of warmup: "
          + ", ".join(f"{w:.0f}" for w in windows) + f"; after: {after.mean():.1f}")
    print(f"per gradient: {in_sampler * 1e3:.2f} ms in the sampler, {alone * 1e3:.2f} ms alone "
          f"({in_sampler / alone:.2f}x)")
    print(f"divergences {int(tree['sample_stats']['diverging'].sum())}; max R-hat "
          f"{table['r_hat'].max():.4f} ({table['r_hat'].idxmax()}); min bulk ESS "
          f"{table['ess_bulk'].min():.0f} ({table['ess_bulk'].idxmin()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
