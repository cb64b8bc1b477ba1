"""The probes behind the claims that need no training (analysis/probes.py)."""

import math
import os

import pytest

from analysis import probes, schema, verdicts


def test_bounded_derivatives_on_the_grid():
    v = probes.activation_derivatives(0)
    assert v["sigmoid_max"] == pytest.approx(0.25, abs=1e-7)
    assert v["tanh_max"] == pytest.approx(1.0, abs=1e-7)
    assert abs(v["sigmoid_argmax"]) < 1e-3 and v["relu_positive_max_error"] == 0.0


def test_a_linear_rnn_with_w_equal_a_identity_decays_at_log_a():
    # vanilla_rnn takes activation="linear": ||dL/dh_t|| = a^(T-t) ||dL/dh_T||.
    v = probes.gradient_through_time(
        0,
        activation="linear",
        recurrent_initializer="identity",
        spectral_radius=0.8,
        units=4,
        timesteps=12,
    )
    assert v["decay_rate"] == pytest.approx(math.log(0.8), abs=1e-4)
    assert v["state_ratio"] == pytest.approx(0.8**11, rel=1e-3)


def test_edge_of_chaos_sweep_rises_through_zero():
    v = probes.edge_of_chaos(0, depth=20, width=64, sigma_w2s=(0.5, 1.5, 2.5, 4.0))
    logs = v["log10_ratio"]
    assert logs == sorted(logs) and logs[0] < 0 < logs[-1]
    assert 0.5 < v["crossing_sigma_w2"] < 4.0


def test_a_zero_branch_scale_starts_as_the_identity_and_vanilla_grows():
    v = probes.branch_scale_init(0, depth=9, width=16)
    assert abs(v["rezero_std_ratio"] - 1) < 1e-6
    assert abs(v["fixup_std_ratio"] - 1) < 1e-6
    assert v["vanilla_std_ratio"] > 10  # 8 blocks at about x1.7 each


def test_crossing_interpolates_and_says_nan_without_one():
    assert probes._crossing([1, 2], [-1.0, 1.0], 0.0) == 1.5
    assert math.isnan(probes._crossing([1, 2], [1.0, 2.0], 0.0))


def test_run_probe_leaves_evidence_a_ledger_reads(tmp_path):
    out = str(tmp_path / "p")
    probes.run_probe("activation_derivatives", 0, {}, out)
    e = verdicts.read_evidence(out)
    assert e.state == "completed" and e.values["tanh_max"] == pytest.approx(1.0)
    assert schema.read_json(os.path.join(out, "probe.json"))["probe"] == (
        "activation_derivatives"
    )
    with pytest.raises(ValueError, match="Unknown probe 'nope'"):
        probes.run_probe("nope", 0, {}, out)
