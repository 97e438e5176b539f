"""Installs the tests' fake DNS (tests/support/fake_dns.py) in a process a test started with this
directory on PYTHONPATH and DRAGONFLY_TEST_FAKE_DNS naming the answers file. Does nothing otherwise."""

import os

if os.environ.get("DRAGONFLY_TEST_FAKE_DNS"):
    import importlib.util
    import pathlib

    _spec = importlib.util.spec_from_file_location(
        "_dragonfly_fake_dns", pathlib.Path(__file__).resolve().parents[1] / "fake_dns.py"
    )
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
    _module.install(os.environ["DRAGONFLY_TEST_FAKE_DNS"])
