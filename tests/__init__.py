"""The test suite: a regular package, so that `from tests.conftest import ...` finds this
folder even where an installed distribution ships a top-level `tests` package of its own
(torch-fidelity 0.4.0 does)."""
