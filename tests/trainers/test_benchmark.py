"""The benchmark runs end to end at toy size (speed is never asserted)."""

from trainers import benchmark


def test_benchmark_measures_every_case_at_toy_size():
    results = benchmark.measure(
        depth=2, width=8, batch_size=16, steps=3, repeats=2, log_every_steps=2
    )
    assert set(results) == {
        "a_gradzoo_norms_every_2",
        "b_gradzoo_norms_every_step",
        "c_keras_fit",
        "d_bare_tape",
    }
    assert all(len(r) == 2 and min(r) > 0 for r in results.values())
    table = benchmark.format_results(results)
    assert "c_keras_fit" in table and "1.00" in table
