"""Colours and small text helpers shared by the main-window widgets.

The colours carry meaning and stay the same in light and dark mode (they are mid-tones that read on
both): weights blue, KV cache violet, compute teal, overhead grey; green/amber/red for fit, partial
offload and "won't fit". Backgrounds and text come from the palette, so the system theme rules.
"""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QWidget

from core.units import GiB, MiB

WEIGHTS = QColor("#4C8BF5")
KV = QColor("#A66CFF")
COMPUTE = QColor("#26A69A")
OVERHEAD = QColor("#9E9E9E")
REPACK = QColor("#7FA8F8")  # the CPU_REPACK copy of host weights: a lighter weights blue
RS = QColor("#C678DD")  # recurrent state (Mamba / delta-net layers): a cache like KV, a lighter violet
OTHERS = QColor(128, 128, 128, 70)  # memory already used by other programs
GOOD = QColor("#2E9D4F")
PARTIAL = QColor("#E0A000")
BAD = QColor("#D93B3B")
SPEED = QColor("#F28C28")

SEGMENTS: tuple[tuple[str, str, QColor], ...] = (
    ("weights", "Weights", WEIGHTS),
    ("kv", "KV cache", KV),
    ("compute", "Compute", COMPUTE),
    ("rs", "Recurrent state", RS),
    ("repack", "CPU repack copy", REPACK),
    ("overhead", "CUDA overhead", OVERHEAD),
)


def is_dark(widget: QWidget | None = None) -> bool:
    """True when the window background is dark (system dark mode)."""
    pal = widget.palette() if widget is not None else QApplication.palette()
    return pal.color(QPalette.ColorRole.Window).lightness() < 128


def muted(widget: QWidget | None = None) -> QColor:
    """A secondary text colour that works on the current background."""
    pal = widget.palette() if widget is not None else QApplication.palette()
    c = QColor(pal.color(QPalette.ColorRole.WindowText))
    c.setAlphaF(0.62)
    return c


def muted_css(widget: QWidget | None = None) -> str:
    """``muted`` as a style-sheet colour (rgba, which Qt style sheets read)."""
    c = muted(widget)
    return f"rgba({c.red()},{c.green()},{c.blue()},{c.alpha()})"


def gib(n: float, digits: int = 1) -> str:
    """Sizes as home-lab users read them: GiB above 1 GiB, MiB below."""
    sign = "−" if n < 0 else ""
    n = abs(n)
    if n >= GiB:
        return f"{sign}{n / GiB:.{digits}f} GiB"
    return f"{sign}{n / MiB:.0f} MiB"


def signed(n: float) -> str:
    """A size difference with an explicit sign ("+120 MiB", "−1.2 GiB")."""
    return "+" + gib(n) if n >= 0 else gib(n)


def tokens(n: int) -> str:
    """Context sizes as people say them: 4K, 32K, 128K; exact when not a multiple of 1024."""
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024}K"
    return f"{n:,}"


def params(n: int) -> str:
    """Parameter counts: 135M, 7.6B."""
    if n >= 10**9:
        return f"{n / 10**9:.1f}B"
    if n >= 10**6:
        return f"{n / 10**6:.0f}M"
    if n > 0:
        return f"{n / 10**3:.0f}K"
    return "?"


def processor_colour(processor: str, fits: bool) -> QColor:
    """Green for 100% GPU, amber for a split, red when it won't fit; CPU-only is neutral-amber."""
    if not fits:
        return BAD
    if processor == "100% GPU":
        return GOOD
    return PARTIAL
