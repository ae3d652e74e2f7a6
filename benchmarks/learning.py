"""Learning the LQ crowding equilibrium: where plain best response diverges, and how fast
fictitious play, damped best response and online mirror descent get there instead.

On the grid game of ``mfg.learning`` (k = 0.1, phi = 1, A = 10, T = 1, one type selling
E0 = 1): the spectral radius of the best-response map against kappa (``picard_threshold_kappa``
is where it crosses 1), then at kappa = 5 (radius about 2.8) each learner from the TWAP
start, with its exploitability (price x shares per agent) against iteration.
``fp_exploitability_slope`` is the log-log slope of fictitious play's exploitability over
iterations 10 .. the last (two decades with --quick, three without), with a 95% interval.

Fictitious play on the finite-difference games (``mfg.learning.fd_learning``, exact
exploitability on the grid): ``fd_fp_exploitability_slope`` for the measured model's shape
(spread cost 0.05, impact exponent 0.7) and for crowd aversion (a density coupling).

``fd_omd_exploitability``: online mirror descent on the same two games after 50 steps.
On the makers' jump game (``mfg.learning.jump_learning``, ``jump_mirror_descent``):
``jump_exploitability`` after best response, fictitious play and mirror descent, against the
start's and the time grid's floor.

Then learning in the book (``mfgsim.studies.learning``, the market and agents of
``runs/learn_executors.toml``): N = 1000 and N = 100 execution agents, never given the MFG,
play rounds and best-respond to what they estimate. Per N: ``book_policy_error`` (the last
learned policy's rate path against the MFG solved on the learners' own primitives, sup,
relative), ``book_inventory_error`` (the conformers' mean inventory in the book against the
MFG's), ``book_exploitability`` (deviators' gain per agent in the book, the last half of
the rounds pooled, 95% interval) and ``book_cost_gap_rel``; ``learn_seconds`` is the whole
run of 20 rounds at N = 1000 (meta-orders included; target 120 s on 2 cores).

Then makers learning on the tick lattice (``runs/learn_makers.toml``), model-based and
model-free (EXP3 bandits), for each N: ``makers_learned_spread`` (the makers' mean posted
spread in the book over the last quarter of the rounds, with a 95% interval over those
rounds) beside ``mfg_spread`` (the lattice MFG on the book's own fill table, measured from
the same rounds), ``makers_pnl_gap_rel``, and for the model-based learners
``makers_exploitability`` (deviating makers' risk-adjusted P&L over the conformers').

    python benchmarks/learning.py --quick   # n_t = 100, 1000 iterations; the book: 8 rounds per N;
                                            # makers at N = 10, 30, 100 (8 model rounds, 60 bandit rounds)
    python benchmarks/learning.py           # n_t = 200, 10000 iterations; the book: 20 rounds per N;
                                            # makers at N = 10 .. 1000 (12 model rounds, 150 bandit
                                            # rounds); about 40 min on 2 cores (timed in parts)
    python benchmarks/learning.py --part makers   # one part: games, executors or makers
"""

from __future__ import annotations

import argparse
import time

from _common import ROOT, emit

import numpy as np  # noqa: E402

from mfg.closed_form import LQCrowding  # noqa: E402
from mfg.laws import GaussianMixture  # noqa: E402
from mfg.learning import LQLearningGame, best_response_learning, fictitious_play, mirror_descent  # noqa: E402
from mfgsim.studies import learning  # noqa: E402

KAPPA = 5.0


def game(kappa: float, n_t: int) -> LQLearningGame:
    model = LQCrowding.single(k=0.1, kappa=kappa, phi=1.0, A=10.0, T=1.0, m0=GaussianMixture.normal(1.0, 0.2))
    return LQLearningGame(model, n_t)


def threshold(n_t: int) -> float:
    """The kappa at which the best-response map's spectral radius crosses 1 (bisection)."""
    lo, hi = 0.0, KAPPA
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if game(mid, n_t).picard_radius() < 1.0 else (lo, mid)
    return 0.5 * (lo + hi)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="n_t = 100 and 1000 iterations; 8 rounds in the book")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    parser.add_argument("--part", choices=("all", "games", "executors", "makers"), default="all",
                        help="only the grid, FD and jump games, the executors in the book, or the makers")
    args = parser.parse_args(argv)
    n_t, iterations = (100, 1000) if args.quick else (200, 10_000)
    if args.part in ("all", "games"):
        games(n_t, iterations, 300 if args.quick else 2000)
    if args.part in ("all", "executors"):
        in_the_book(8 if args.quick else 20, args.workers)
    if args.part in ("all", "makers"):
        makers((10, 30, 100) if args.quick else (10, 30, 100, 300, 1000), 8 if args.quick else 12,
               (10, 30, 100) if args.quick else (10, 30, 100, 300, 1000), 60 if args.quick else 150, args.workers)


def games(n_t: int, iterations: int, fd_iterations: int) -> None:
    """The grid game's learners, then the FD and jump games (no book)."""
    for kappa in (0.5, 1.0, 2.0, 5.0, 10.0):
        emit("picard_radius", game(kappa, n_t).picard_radius(), "ratio", kappa=kappa, n_t=n_t)
    emit("picard_threshold_kappa", threshold(n_t), "price per share", n_t=n_t)

    g = game(KAPPA, n_t)
    picard = best_response_learning(g, 100)
    emit("picard_diverges", int(picard.diverged), "flag", kappa=KAPPA, radius=round(g.picard_radius(), 3),
         iterations=picard.iterations, exploitability=[float(f"{e:.3g}") for e in picard.exploitability[:6]])
    t0 = time.perf_counter()
    fp = fictitious_play(g, iterations)
    seconds = time.perf_counter() - t0
    slope, se = fp.slope(10)
    emit("fp_exploitability_slope", slope, "log-log", kappa=KAPPA, interval=[round(slope - 1.96 * se, 4),
         round(slope + 1.96 * se, 4)], iterations=[10, iterations], target=-0.8)
    emit("fp_exploitability", fp.exploitability[-1], "price x shares", kappa=KAPPA, iterations=iterations,
         start=float(f"{fp.exploitability[0]:.4g}"), distance_to_equilibrium=float(f"{fp.distance[-1]:.3g}"))
    emit("fp_seconds_per_iteration", seconds / iterations, "s", n_t=n_t)
    for name, history in (("damped_br", best_response_learning(g, iterations, damping=0.05)),
                          ("mirror_descent", mirror_descent(g, iterations, step_size=0.05))):
        reached = np.flatnonzero(history.exploitability < 1e-8 * history.exploitability[0])
        emit(f"{name}_iterations_to_1e-8", int(reached[0]) if reached.size else -1, "iterations", kappa=KAPPA,
             settings=history.settings)
    fd_games(fd_iterations)
    jump_games()


def fd_games(iterations: int) -> None:
    """Fictitious play on the FD games: the measured model's shape (spread cost, concave impact)
    and crowd aversion (a density coupling), with their exact exploitability."""
    from mfg.fd import CrowdAversionModel, Grid, LQCrowdingModel
    from mfg.learning import fd_learning, fd_mirror_descent

    measured = LQCrowdingModel(LQCrowding.single(k=0.1, kappa=1.0, phi=1.0, A=10.0, T=1.0,
                                                 m0=GaussianMixture.normal(1.0, 0.2)),
                               spread_cost=0.05, impact_exponent=0.7)
    aversion = CrowdAversionModel(k=1.0, phi=1.0, A=1.0, alpha=1.0, T=1.0, m0=GaussianMixture.normal(1.0, 0.2),
                                  sigma=0.2)
    for name, model, grid in (("measured_shape", measured, Grid(-0.6, 2.0, 131, 1.0, 100)),
                              ("crowd_aversion", aversion, Grid(-1.0, 3.0, 81, 1.0, 50))):
        t0 = time.perf_counter()
        fp = fd_learning(model, grid, iterations)
        seconds = time.perf_counter() - t0
        slope, se = fp.slope(10)
        emit("fd_fp_exploitability_slope", slope, "log-log", game=name, iterations=[10, iterations],
             interval=[round(slope - 1.96 * se, 4), round(slope + 1.96 * se, 4)],
             exploitability=[float(f"{fp.exploitability[0]:.4g}"), float(f"{fp.exploitability[-1]:.4g}")],
             seconds_per_iteration=round(seconds / iterations, 5))
        omd = fd_mirror_descent(model, grid, 50, step_size=3.0 if name == "measured_shape" else 0.1)
        emit("fd_omd_exploitability", omd.exploitability[-1], "price x shares", game=name, iterations=50,
             settings=omd.settings, diverged=int(omd.diverged),
             at=[float(f"{omd.exploitability[i]:.3g}") for i in (0, 1, 5, 10, 20) if i < omd.exploitability.size])


def jump_games() -> None:
    """Best response and fictitious play on the makers' jump game (competition 2/tick), from makers
    who believe the others quote wider than they will; the floor is the time grid's error."""
    from mfg.learning import jump_learning, jump_mirror_descent
    from mfg.market_making import ExponentialIntensity, MarketMakingMFG, TickMarketMakingMFG

    model = MarketMakingMFG(gamma=0.05, sigma=2.0, A=100.0, k=0.8, competition=2.0, max_inventory=5, T=1.0)
    for n_t in (800, 1600):
        start = np.full((2, n_t + 1), 0.45)
        br = jump_learning(model, n_t, 3, method="best_response", start=start)
        fp = jump_learning(model, n_t, 30, start=start)
        emit("jump_exploitability", br.exploitability[1], "value per maker", method="best_response", n_t=n_t,
             start=float(f"{br.exploitability[0]:.4g}"), after=[float(f"{e:.3g}") for e in br.exploitability[1:]])
        emit("jump_exploitability", fp.exploitability[-1], "value per maker", method="fictitious_play", n_t=n_t,
             start=float(f"{fp.exploitability[0]:.4g}"),
             at=[float(f"{fp.exploitability[i]:.3g}") for i in (1, 2, 5, 10, 30)])
        omd = jump_mirror_descent(model, n_t, 10, step_size=0.3, start=start)
        emit("jump_exploitability", omd.exploitability[-1], "value per maker", method="mirror_descent", n_t=n_t,
             start=float(f"{omd.exploitability[0]:.4g}"), at=[float(f"{e:.3g}") for e in omd.exploitability[1:4]])
    # on the tick lattice: exponential weights over the quotes, from the uniform mixture
    tick = TickMarketMakingMFG(gamma=0.05, sigma=2.0, quotes=(1.0, 2.0, 3.0, 4.0, 5.0),
                               intensity=ExponentialIntensity(100.0, 0.8, 0.3), max_inventory=5, T=1.0)
    omd = jump_mirror_descent(tick, 1600, 60, step_size=0.03)
    fp = jump_learning(tick, 1600, 30)
    emit("jump_exploitability", omd.exploitability[-1], "value per maker", method="mirror_descent", game="lattice",
         n_t=1600, start=float(f"{omd.exploitability[0]:.4g}"),
         at=[float(f"{omd.exploitability[i]:.3g}") for i in (1, 5, 10, 30, 60)])
    emit("jump_exploitability", fp.exploitability[-1], "value per maker", method="fictitious_play", game="lattice",
         n_t=1600, start=float(f"{fp.exploitability[0]:.4g}"))


def makers(sizes, model_rounds: int, bandit_sizes, bandit_rounds: int, workers: int | None) -> None:
    """Makers learning their spread in the book, model-based and by bandits, against the lattice MFG."""
    import dataclasses

    base = learning.load(ROOT / "runs" / "learn_makers.toml")
    for learner, rounds, ns in (("model", model_rounds, sizes), ("bandit", bandit_rounds, bandit_sizes)):
        for n in ns:
            plan = dataclasses.replace(base, learner=learner, rounds=rounds, n_makers=n, scaling=(),
                                       deviators=max(base.deviators, 1.0 / n))
            t0 = time.perf_counter()
            result = learning.run(plan, workers=workers, verbose=False)
            seconds = time.perf_counter() - t0
            last = result.rows[-max(1, rounds // 4):]
            spread = np.array([r["spread"] for r in last])
            half = 1.96 * spread.std(ddof=1) / np.sqrt(spread.size) if spread.size > 1 else float("nan")
            tag = {"learner": learner, "n_makers": n, "rounds": rounds, "pooled_rounds": len(last)}
            emit("makers_learned_spread", spread.mean(), "ticks", **tag,
                 interval=[round(spread.mean() - half, 4), round(spread.mean() + half, 4)],
                 mfg_spread=round(last[-1]["mfg_spread"], 4), first_round=round(result.rows[0]["spread"], 4),
                 seconds=round(seconds, 1))
            emit("makers_pnl_gap_rel", float(np.mean([r["pnl_gap_rel"] for r in last])), "relative", **tag)
            if learner == "model":
                e = result.settled()
                emit("makers_exploitability", e["exploitability"], "ticks x quotes per maker",
                     **{**tag, "pooled_rounds": e["rounds"]},
                     interval=[round(e["exploitability_lo"], 4), round(e["exploitability_hi"], 4)],
                     relative=round(e["exploitability_rel"], 4))


def in_the_book(rounds: int, workers: int | None) -> None:
    """Learning in the book at N = 1000 and N = 100 (the finite-N gap)."""
    base = learning.load(ROOT / "runs" / "learn_executors.toml")
    for n in (1000, 100):
        config = {**base.config, "crowd": {**base.config["crowd"], "n_agents": n}}
        # at N = 100, 5% deviators are 5 agents: a tenth of the agents deviate instead
        settings = learning.LearningSettings(**{**base.settings.__dict__, "rounds": rounds,
                                                "deviators": 0.05 if n >= 1000 else 0.1})
        plan = learning.LearningPlan(base.name, base.source, settings, config, base.meta_orders)
        t0 = time.perf_counter()
        result = learning.run(plan, workers=workers, verbose=False)
        seconds = time.perf_counter() - t0
        last, settled = result.rows[-1], result.settled()
        tag = {"n_agents": n, "rounds": rounds, "seeds_per_round": settings.seeds}
        emit("book_policy_error", last["policy_error"], "relative", **tag,
             first=round(result.rows[0]["policy_error"], 4), **({"target": 0.10} if n >= 1000 else {}))
        emit("book_inventory_error", last["inventory_error"], "relative", **tag)
        emit("book_exploitability", settled["exploitability"], "value per agent", **tag,
             interval=[round(settled["exploitability_lo"], 4), round(settled["exploitability_hi"], 4)],
             relative=round(settled["exploitability_rel"], 4), pooled_rounds=settled["rounds"],
             first_round=round(result.rows[0]["exploitability"], 4))
        emit("book_cost_gap_rel", last["cost_gap_rel"], "relative", **tag)
        emit("learn_seconds", seconds, "s", **tag, **({"target": 120} if n >= 1000 and rounds == 20 else {}))


if __name__ == "__main__":
    main()
