"""The verdict rules (analysis/verdicts.py) on hand-made run directories."""

import dataclasses
import math
import os

from analysis import claims, schema, verdicts


def make_run(root, name, *, accuracy=None, state="completed", rows=2, torn=False):
    """A run directory as the trainer writes it, with a chosen final accuracy."""
    path = os.path.join(root, name)
    os.makedirs(path)
    record = schema.RunRecord(
        config={"model": "plain_mlp", "seed": 0},
        num_replicas=1,
        task_info={},
        num_parameters=1,
        versions={},
        depth_axis=[[0, "a/kernel"], [1, "b/kernel"]],
    )
    schema.write_json(os.path.join(path, schema.CONFIG_FILE), record.to_json())
    status = schema.Status(state, rows, f"{state} at step {rows}")
    schema.write_json(os.path.join(path, schema.STATUS_FILE), status.to_json())
    for step in range(1, rows + 1):
        schema.append_jsonl(
            os.path.join(path, schema.METRICS_FILE),
            schema.MetricsRow(
                step,
                0.0,
                1,
                1.0,
                0.1,
                1.0,
                0.0,
                1.0,
                {"a/kernel": 1e-4, "b/kernel": 1.0},
            ).to_json(),
        )
    if torn:  # killed mid-append: a last line without its newline
        with open(os.path.join(path, schema.METRICS_FILE), "a") as f:
            f.write('{"step": 3, "wall')
    if accuracy is not None:
        schema.append_jsonl(
            os.path.join(path, schema.EVAL_FILE),
            schema.EvalRow(rows, 0.0, {"accuracy": accuracy}).to_json(),
        )
    return path


def _measure(e):
    return {
        "accuracy": claims.final_eval(e["a"].run, "accuracy"),
        "ratio": claims.depth_ratio(e["a"].run),
    }


CLAIM = claims.Claim(
    id="X",
    statement="accuracy above one half",
    source="tests",
    scales={},
    measure=_measure,
    criterion=claims.criterion(("accuracy", ">", 0.5), calibration="test"),
)


def judge(tmp_path, accuracies, claim=CLAIM, per_seed=None):
    seed_paths = {}
    for seed, acc in enumerate(accuracies):
        name = f"run{seed}"
        if acc != "missing":
            make_run(
                str(tmp_path), name, accuracy=acc, **(per_seed or {}).get(seed, {})
            )
        seed_paths[seed] = {"a": os.path.join(str(tmp_path), name)}
    return verdicts.judge(claim, seed_paths)


def test_holds_in_two_of_three_seeds(tmp_path):
    v = judge(tmp_path, [0.9, 0.2, 0.8])
    assert v.verdict == verdicts.HOLDS, v
    assert v.summary == {"value": "accuracy", "median": 0.8, "min": 0.2, "max": 0.9}
    assert [s.holds for s in v.seeds] == [True, False, True]


def test_does_not_hold(tmp_path):
    v = judge(tmp_path, [0.1, 0.9, 0.3])
    assert v.verdict == verdicts.NOT_HOLD and "1 of 3" in v.reason


def test_inconclusive_on_spread(tmp_path):
    v = judge(tmp_path, [0.9, 0.9, 0.1, 0.1])  # 4 seeds: a majority is 3
    assert v.verdict == verdicts.INCONCLUSIVE and v.reason.startswith("spread")


def test_missing_run_says_so_instead_of_a_verdict(tmp_path):
    v = judge(tmp_path, [0.9, 0.1, "missing"])
    assert v.verdict == verdicts.INCONCLUSIVE
    assert v.reason.startswith("missing runs") and "not run" in v.reason


def test_enough_seeds_decide_despite_a_missing_run(tmp_path):
    assert judge(tmp_path, [0.9, 0.9, "missing"]).verdict == verdicts.HOLDS


def test_a_diverged_run_is_a_recorded_problem(tmp_path):
    v = judge(tmp_path, [0.9, 0.2, 0.9], per_seed={2: {"state": "diverged"}})
    assert v.verdict == verdicts.INCONCLUSIVE
    assert v.reason.startswith("diverged runs") and "diverged at step 2" in v.reason
    assert v.seeds[2].problem_kind == "diverged"


def test_a_diverged_run_is_measured_where_declared_a_result(tmp_path):
    claim = dataclasses.replace(CLAIM, diverged_ok=("a",))
    v = judge(
        tmp_path, [0.9, 0.2, 0.9], claim=claim, per_seed={2: {"state": "diverged"}}
    )
    assert v.verdict == verdicts.HOLDS


def test_failed_and_running_runs(tmp_path):
    v = judge(
        tmp_path,
        [0.9, 0.2, 0.9],
        per_seed={1: {"state": "failed"}, 2: {"state": "running"}},
    )
    assert v.verdict == verdicts.INCONCLUSIVE
    assert v.reason.startswith("failed runs, running runs")


def test_a_torn_metrics_line_is_skipped_and_the_run_measured(tmp_path):
    v = judge(tmp_path, [0.9, 0.9, 0.9], per_seed={0: {"torn": True}})
    assert v.verdict == verdicts.HOLDS
    assert v.seeds[0].values["ratio"] == 1e-4


def test_a_corrupt_metrics_file_is_unreadable_not_a_crash(tmp_path):
    path = make_run(str(tmp_path), "bad", accuracy=0.9)
    with open(os.path.join(path, schema.METRICS_FILE), "w") as f:
        f.write('{"step": 1, "wal\n{"step": 2}\n')
    v = verdicts.judge(CLAIM, {0: {"a": path}})
    assert v.verdict == verdicts.INCONCLUSIVE and "not valid JSON" in v.reason


def test_a_measurement_without_its_rows_is_a_problem(tmp_path):
    v = judge(tmp_path, [None, None, None])  # no eval rows
    assert v.verdict == verdicts.INCONCLUSIVE and "not measurable" in v.reason


def test_pending_claims_give_their_reason():
    v = verdicts.judge(claims.CLAIMS["C12"], {})
    assert v.verdict == verdicts.PENDING and "--suite=optimizers" in v.reason


def test_a_pretraining_run_is_measured_on_its_fine_tuning_phase(tmp_path):
    top = make_run(str(tmp_path), "pre", rows=0)
    record = schema.read_json(os.path.join(top, schema.CONFIG_FILE))
    schema.write_json(
        os.path.join(top, schema.CONFIG_FILE), {**record, "pretraining": {}}
    )
    make_run(top, schema.FINETUNE_DIR, accuracy=0.7)
    e = verdicts.read_evidence(top)
    assert e.run.path.endswith(schema.FINETUNE_DIR)
    assert claims.final_eval(e.run, "accuracy") == 0.7
    os.rename(os.path.join(top, schema.FINETUNE_DIR), os.path.join(top, "x"))
    v = verdicts.judge(CLAIM, {0: {"a": top}})
    assert v.seeds[0].problem_kind == "missing" and "finetune" in v.reason


def test_the_ledger_keeps_infinite_and_nan_values(tmp_path):
    path = str(tmp_path / "ledger.json")
    values = {"spike": math.inf, "low": -math.inf, "x": math.nan, "none": None}
    ledger = {
        "claims": [
            {
                "seeds": [{"values": values}, {"values": None}],
                "summary": {"median": math.inf, "min": 1.0, "max": math.inf},
            }
        ]
    }
    verdicts.write_ledger(path, ledger)
    text = open(path).read()
    assert '"spike": "inf"' in text and '"low": "-inf"' in text
    assert '"x": "nan"' in text and '"none": null' in text
    back = verdicts.read_ledger(path)["claims"][0]
    got = back["seeds"][0]["values"]
    assert got["spike"] == math.inf and got["low"] == -math.inf
    assert math.isnan(got["x"]) and got["none"] is None
    assert back["seeds"][1]["values"] is None
    assert back["summary"] == {"median": math.inf, "min": 1.0, "max": math.inf}


def test_every_claim_is_declared_at_both_scales_or_pending():
    for cid, claim in claims.CLAIMS.items():
        if claim.pending:
            continue
        assert set(claim.scales) == set(claims.SCALES), cid
        assert claim.criterion.calibration, cid
