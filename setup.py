"""gradzoo: see README.md. `pip install -e ".[test]"`; tests: `make test`."""

from setuptools import find_packages, setup

setup(
    name="gradzoo",
    version="0.1.0",
    description="A TensorFlow 2 / Keras 3 model zoo for vanishing and exploding "
    "gradients: paired models, an instrumented trainer, and analysis.",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["zoo", "zoo.*", "trainers", "analysis", "analysis.*"]),
    # The report's Jinja2 templates (analysis/report.py).
    package_data={"analysis": ["templates/*.j2"]},
    install_requires=[
        "tensorflow>=2.16,<2.22",
        "keras>=3.3",
        "tensorflow-datasets>=4.9",
        "importlib_resources",  # needed by tensorflow-datasets, not declared by it
        "tensorboard",  # TF 2.21 no longer brings it; tb/ summaries are read with it
        "absl-py>=2.0",
        "numpy",
        "scikit-learn",  # ships the real 8x8 digits images offline
        "threadpoolctl",  # analysis/temporal.py imports it (not only via sklearn)
        "matplotlib>=3.7",  # the report's figures (analysis/figures/)
        "Jinja2>=3.1",  # the report's HTML and Markdown (analysis/templates/)
    ],
    extras_require={
        # The suite's Ray test starts a real local Ray instance.
        "test": ["pytest>=7", "pytest-xdist", "ruff", "ray==2.60.*"],
        "gpu": ["tensorflow[and-cuda]>=2.16,<2.22"],
        # Case (e) of trainers/benchmark.py. Any torch >= 2.0 works; the pin
        # keeps pip from fetching a newer build with GBs of CUDA libraries.
        "bench": ["torch==2.13.0"],
        # python -m trainers.suite --executor=ray
        "ray": ["ray==2.60.*"],
    },
    entry_points={
        "console_scripts": [
            "gradzoo-train=trainers.train:run_main",
            "gradzoo-pretrain=trainers.pretrain:run_main",
            "gradzoo-compare=analysis.compare:run_main",
            "gradzoo-benchmark=trainers.benchmark:run_main",
            "gradzoo-suite=trainers.suite:run_main",
            "gradzoo-report=analysis.report:run_main",
        ]
    },
)
