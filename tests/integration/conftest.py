"""Fixtures shared by the install tests (kustomize overlays and the Helm chart)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gpu_model_operator_dev.azureml_emulator import Emulator, EmulatorConfig, Latencies, start_emulator
from tests.e2e.azure_harness import CLIENT_ID, CLIENT_SECRET


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """The Azure ML emulator the installed operator's azureml backend talks to, with the example's model."""
    latencies = Latencies(**dict.fromkeys(Latencies.__dataclass_fields__, 0.5))
    config = EmulatorConfig(latencies=latencies, credentials={CLIENT_ID: CLIENT_SECRET})
    with start_emulator(tmp_path_factory.mktemp("emulator"), config) as emulator:
        emulator.seed(models=[{"name": "digits"}])
        yield emulator
