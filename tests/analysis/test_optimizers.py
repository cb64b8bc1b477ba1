"""C12's rules (analysis/optimizers.py) on hand-made results: the tuned rate's
ranking (diverged last, ties to the lower rate), the winner only where the
tuned spreads do not overlap, and the verdict. The study end to end is in
tests/trainers/test_optimizer_study.py.
"""

import math

from analysis import optimizers, verdicts
from analysis.optimizers import Final

ACC = optimizers.Problem("", {}, metric="accuracy", higher_is_better=True)
MSE = optimizers.Problem("", {}, metric="mse", higher_is_better=False)


def ranked(problem, finals):
    return sorted(finals, key=lambda r: optimizers._rank_key(problem, r, finals[r]))


def test_diverged_rates_rank_last_and_ties_go_to_the_lower_rate():
    finals = {
        0.1: Final("completed", 0.9, 10, ""),
        1.0: Final("diverged", None, 3, ""),
        0.01: Final("completed", 0.9, 10, ""),
        0.001: Final("completed", 0.5, 10, ""),
    }
    assert ranked(ACC, finals) == [0.01, 0.1, 0.001, 1.0]
    mse = {r: Final(f.state, f.value and 1 - f.value, 0, "") for r, f in finals.items()}
    assert ranked(MSE, mse)[0] == 0.01


def tuned(values, diverged=0, problem=ACC):
    q = optimizers._quartiles(values)
    out = {"planned": len(values) + diverged, "ended": len(values) + diverged}
    out.update(q, diverged=diverged, rate=0.1)
    if diverged:
        out["min" if problem.higher_is_better else "max"] = (
            -math.inf if problem.higher_is_better else math.inf
        )
    return {"tuned": out}


def test_a_winner_only_where_the_spreads_do_not_overlap():
    clear = {"adam": tuned([0.9, 0.92, 0.95]), "sgd": tuned([0.5, 0.7, 0.85])}
    assert optimizers.winner(ACC, clear)[0] == "adam"
    overlap = {"adam": tuned([0.9, 0.92, 0.95]), "sgd": tuned([0.5, 0.7, 0.91])}
    best, why = optimizers.winner(ACC, overlap)
    assert best is None and "no clear winner" in why
    # A diverged seed makes the spread unbounded: no winner.
    diverged = {"adam": tuned([0.9, 0.95], diverged=1), "sgd": tuned([0.1, 0.2])}
    assert optimizers.winner(ACC, diverged)[0] is None
    low = {"adam": tuned([0.01, 0.02], problem=MSE), "sgd": tuned([0.1, 0.2])}
    assert optimizers.winner(MSE, low)[0] == "adam"


def test_the_verdict():
    problems = {"a": ACC, "b": MSE}

    def study(a, b):
        return {
            "a": {"optimizers": a},
            "b": {"optimizers": b},
        }

    adam_wins_a = {"adam": tuned([0.9, 0.95]), "sgd": tuned([0.1, 0.2])}
    adam_wins_b = {"adam": tuned([0.01, 0.02]), "sgd": tuned([0.1, 0.2])}
    sgd_wins_b = {"adam": tuned([0.1, 0.2]), "sgd": tuned([0.01, 0.02])}
    overlap_b = {"adam": tuned([0.01, 0.2]), "sgd": tuned([0.02, 0.1])}
    v = optimizers.judge(problems, study(adam_wins_a, adam_wins_b))
    assert v["verdict"] == verdicts.HOLDS
    v = optimizers.judge(problems, study(adam_wins_a, sgd_wins_b))
    assert v["verdict"] == verdicts.NOT_HOLD and "sgd beat Adam" in v["reason"]
    v = optimizers.judge(problems, study(adam_wins_a, overlap_b))
    assert v["verdict"] == verdicts.INCONCLUSIVE and "no clear winner" in v["reason"]
