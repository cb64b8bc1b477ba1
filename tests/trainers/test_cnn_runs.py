"""The CNNs and the branch scales through the trainer, as a user runs them.

Bad input is one line, exit 2 and nothing written; a tiny resnet and
plain_cnn run on digits log gradient norms along the declared depth axis
(a block's convolutions and projection at one position), and
analysis.compare gives their first/last ratios.
"""

import json
import os

import pytest

from analysis import compare
from analysis.rundir import load_run
from tests.helpers import assert_one_line_error, run_cli

TINY_CNN = [
    "--task=digits",
    "--depth=8",
    "--width=4",
    "--batch_size=32",
    "--num_steps=4",
    "--log_every_steps=2",
    "--eval_every_steps=2",
    "--checkpoint_every_steps=2",
]


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--model=resnet", "--depth=21"], ["nearest valid depths are 20 and 26"]),
        (["--model=resnet", "--task=teacher"], ["takes image inputs", "vector"]),
        (["--model=plain_cnn", "--task=adding"], ["takes image inputs", "sequence"]),
        (
            ["--model=resnet", "--task=motifs", "--image_size=3"],
            ["at least 4x4", "(3, 3, 1)"],
        ),
        (["--model=plain_cnn", "--branch_scale=rezero"], ["plain_cnn has none"]),
        (["--model=plain_mlp", "--branch_scale=fixup"], ["plain_mlp has none"]),
        (["--model=resnet", "--branch_scale=fixup"], ["use norm='none'"]),
        (
            ["--model=plain_cnn", "--shortcut=B"],
            ["--shortcut does not apply to --model=plain_cnn"],
        ),
        (["--model=resnet", "--task=digits", "--augment"], ["augment"]),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    capsys, tmp_path, data_dir, args, needles
):
    run = tmp_path / "run"
    code, _, err = run_cli(
        capsys, f"--output_dir={run}", f"--data_dir={data_dir}", "--task=digits", *args
    )
    assert_one_line_error(code, err, *needles)
    assert not os.path.exists(run)


def test_resnet_and_plain_cnn_train_on_digits_and_compare(capsys, tmp_path, data_dir):
    runs = []
    for model in ("plain_cnn", "resnet"):
        run = tmp_path / model
        code, out, err = run_cli(
            capsys,
            f"--model={model}",
            f"--output_dir={run}",
            f"--data_dir={data_dir}",
            "--shortcut=B" if model == "resnet" else "--norm=none",
            *TINY_CNN,
        )
        assert code == 0, err
        assert "completed at step 4" in out
        config = json.load(open(run / "config.json"))
        axis = [tuple(entry) for entry in config["depth_axis"]]
        assert axis[0] == (0, "stem_conv/kernel")
        assert (1, "block00_conv2/kernel") in axis
        if model == "resnet":
            assert (2, "block01_proj/kernel") in axis
        rows = [json.loads(line) for line in open(run / "metrics.jsonl")]
        logged = set(rows[0]["grad_norms"])
        assert {path for _, path in axis} <= logged
        runs.append(load_run(str(run)))
    table = compare.rows(runs)
    assert [row[1] for row in table[1:]] == ["plain_cnn", "resnet"]
    for row in table[1:]:
        assert float(row[6]) > 0  # first/last ratio at step 0
