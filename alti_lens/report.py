"""`alti_lens.report`: the interactive HTML report, kept at its first import path.

The report lives in `alti_lens.render.report`; `build_report`, `write_report`, `to_html` and
`MAX_VALUES` are the same objects here.
"""

from alti_lens.render.report import MAX_VALUES, build_report, to_html, write_report

__all__ = ["MAX_VALUES", "build_report", "to_html", "write_report"]
