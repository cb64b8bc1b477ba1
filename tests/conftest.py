"""Shared test set-up: quiet TensorFlow, two logical CPUs, one digits build.

The whole suite runs in one process (a TensorFlow import costs ~3 s and
~0.5 GB), so the logical-device split for the mirrored-strategy tests has to
happen here, before any test runs a TensorFlow op.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Two test workers on two cores (the Makefile's -n 2), and the processes the
# tests start: one intra-op thread each, as the suite gives its jobs. The
# tests' small ops run faster unsplit: 10-16% less wall time (BUILD.md,
# "Development").
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * 2,
)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A TFDS data directory shared by the tests (digits is built once)."""
    return str(tmp_path_factory.mktemp("tfds"))
