import os
import sys

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "..", "..", "benchmarks"))  # zoo: models in plain torch.nn
sys.path.insert(0, os.path.join(HERE, "..", "core"))  # interpreter_device


def pytest_generate_tests(metafunc):  # type: ignore[no-untyped-def]
    if "device" in metafunc.fixturenames:
        from devices import device_params

        metafunc.parametrize("device", device_params(metafunc.config))
