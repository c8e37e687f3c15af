"""matplotlib for the figures liss writes (forgetting, learning curves): imported where a
figure is drawn, headless, with a clear error where it is missing."""

from __future__ import annotations

from pathlib import Path

from liss.eval.generators import LoadError


def pyplot(figure: str):
    """matplotlib.pyplot on the Agg backend; LoadError naming `figure` without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise LoadError(f"the {figure} figure needs matplotlib (pip install matplotlib)"
                        ) from None
    return plt


def save(plt, fig, out: Path) -> Path:
    """`fig` written to `out` (folders made), then closed."""
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
