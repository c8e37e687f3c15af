"""CLI verbs for inference and evaluation: registered into `liss` by `liss.cli`."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this package's verbs (`liss translate`, `liss eval`, `liss export`, ...)."""
