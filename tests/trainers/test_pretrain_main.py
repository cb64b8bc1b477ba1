"""python -m trainers.pretrain: bad input is one line, exit 2, nothing
written; a tiny run completes and records flags that replay it."""

import os

import pytest

from analysis import rundir, schema
from tests.helpers import assert_one_line_error, run_pretrain_cli

TINY = [
    "--model=plain_mlp",
    "--depth=2",
    "--width=8",
    "--task=teacher",
    "--num_features=8",
    "--num_train=128",
    "--num_eval=32",
    "--batch_size=32",
    "--log_every_steps=2",
]


@pytest.mark.parametrize(
    "flags,needles",
    [
        (
            ["--model=lstm", "--task=adding", "--pretrain_steps_per_layer=5"],
            ["Model 'lstm' has no dense hidden stack"],
        ),
        (
            [*TINY, "--pretrain_steps_per_layer=0"],
            ["pretrain_steps_per_layer must be positive", "steps_per_layer=0"],
        ),
        ([*TINY, "--pretrain_steps_per_layer=-3"], ["steps_per_layer=-3"]),
        (
            [*TINY, "--pretrain_steps_per_layer=5", "--pretrain_layers=0,2"],
            ["pretrain layer 2 is out of range", "hidden layers 0-1"],
        ),
        (
            [*TINY, "--pretrain_steps_per_layer=5", "--pretrain_layers=1,0"],
            ["distinct and increasing"],
        ),
        (
            [*TINY, "--pretrain_steps_per_layer=5", "--denoising=1.0"],
            ["denoising", "must be in [0, 1)", "denoising=1.0"],
        ),
        ([*TINY, "--pretrain_steps_per_layer=5", "--denoising=-0.1"], ["[0, 1)"]),
        (
            [*TINY, "--pretrain_steps_per_layer=5", "--num_steps=9"],
            ["--finetune_steps"],
        ),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(capsys, tmp_path, flags, needles):
    out = tmp_path / "p"
    if "--num_steps=9" not in flags:
        flags = [*flags, "--finetune_steps=4"]
    code, _, err = run_pretrain_cli(capsys, *flags, f"--output_dir={out}")
    assert_one_line_error(code, err, *needles)
    assert not os.path.exists(out)


def test_a_tiny_run_completes_and_its_flags_replay_it(capsys, tmp_path):
    out = tmp_path / "p"
    flags = [
        *TINY,
        "--pretrain_steps_per_layer=4",
        "--finetune_steps=4",
        "--tied_weights",
        "--denoising=0.2",
        f"--output_dir={out}",
    ]
    code, stdout, err = run_pretrain_cli(capsys, *flags)
    assert code == 0, err
    assert "completed at step 4" in stdout
    assert sorted(os.listdir(out)) == [
        "config.json",
        "finetune",
        "flags.txt",
        "pretrain_block00",
        "pretrain_block01",
        "status.json",
    ]
    phase = rundir.load_run(str(out / "pretrain_block01"))
    assert phase.record.phase["tied_weights"] is True
    assert set(phase.metrics[0].grad_norms) == {
        "block01_dense/kernel",
        "block01_dense/bias",
        "decoder_tied/bias",
    }
    text = (out / "flags.txt").read_text()
    assert "--finetune_steps=4" in text and "--num_steps" not in text
    assert "--tied_weights" in text.split() and "--denoising=0.2" in text
    # The recorded flags replay the run: the same command resumes (finished).
    code, stdout, _ = run_pretrain_cli(
        capsys, f"--flagfile={out / 'flags.txt'}", f"--output_dir={out}"
    )
    assert code == 0 and "completed at step 4" in stdout
    # So does --config: the run's config.json, or a JSON PretrainConfig (as
    # the suite writes it); a different config would be refused, not resumed.
    record = schema.RunRecord.from_json(schema.read_json(str(out / "config.json")))
    spec = tmp_path / "spec.json"
    schema.write_json(str(spec), {**record.pretraining, "run": record.config})
    for config in (out / "config.json", spec):
        code, stdout, err = run_pretrain_cli(
            capsys, f"--config={config}", f"--output_dir={out}"
        )
        assert code == 0 and "completed at step 4" in stdout, err
    code, _, err = run_pretrain_cli(
        capsys, f"--config={spec}", "--denoising=0.3", f"--output_dir={out}"
    )
    assert code == 2 and "denoising" in err  # a flag next to it wins
