"""Loads the kit's pytest plugin when pytest collects this package without sol-core's
``pytest11`` entry point (a source checkout installed before the entry point existed): with
``--pyargs``, pytest accepts ``pytest_plugins`` here. Options (``--sol-device``) need the plugin
loaded at start-up, i.e. the entry point or ``-p sol.testing.plugin``."""

pytest_plugins = ["sol.testing.plugin"]
