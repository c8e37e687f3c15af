"""`liss forgetting` without a store: the phase sequence each schedule walks (which decides
when a task is switched off), and an unknown run as a one-line error."""

from __future__ import annotations

from liss.cli import main
from liss.eval.forgetting import phase_sequence


def test_phase_sequences_of_the_schedules() -> None:
    def actives(name: str, mode: str = "freeze") -> list[tuple[str, ...]]:
        return [p.active for p in phase_sequence(name, ["rotation", "gray"], mode)]

    final = ("identity", "translation")
    assert actives("sequential") == actives("liss") == [("rotation",), ("gray",), final]
    assert actives("additional") == [("rotation",), ("rotation", "gray"),
                                     ("rotation", "gray", *final)]
    assert actives("parallel") == [("rotation", "gray", *final)]
    assert actives("representational") == [("rotation", "gray"), final]


def test_unknown_run_is_a_one_line_error(capsys) -> None:
    assert main(["forgetting", "no-such-run-folder"]) == 2
    assert "give --uri" in capsys.readouterr().err
