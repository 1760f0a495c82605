"""The colour scales of the terminal and HTML views (the report's page script has its own copy).

Sequential: white to dark orange, for shares in [0, 1]; diverging: blue (negative) through white
to red (positive), for signed scores such as ALTI-Logit's.
"""

_LOW, _HIGH = (255, 245, 235), (217, 72, 1)
_NEGATIVE, _POSITIVE = (33, 102, 172), (178, 24, 43)


def shade(value: float, peak: float, diverging: bool = False) -> tuple[int, int, int]:
    """The background colour of `value` on a scale whose extreme is `peak` (> 0)."""
    t = max(-1.0, min(1.0, value / peak)) if peak > 0 else 0.0
    if diverging:
        low, high = (255, 255, 255), _POSITIVE if t >= 0 else _NEGATIVE
        t = abs(t)
    else:
        low, high = _LOW, _HIGH
        t = max(0.0, t)
    r, g, b = (round(a + (b - a) * t) for a, b in zip(low, high, strict=True))
    return r, g, b


def is_dark(rgb: tuple[int, int, int]) -> bool:
    """Whether text on this background reads better in white (perceived brightness < 140)."""
    r, g, b = rgb
    return (r * 299 + g * 587 + b * 114) / 1000 < 140


def peak(values: list[float], diverging: bool, given: float | None = None) -> float:
    """The scale's extreme: `given`, else the largest value (absolute, when `diverging`); 1 when
    that is not positive."""
    if given is None:
        given = max((abs(v) if diverging else v for v in values), default=0.0)
    return given if given > 0 else 1.0
