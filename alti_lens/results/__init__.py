"""Result containers: the tensors, token strings and metadata of one `alti`, `alti_plus` or
`alti_logit` call, with pure selections (`top_sources`, `without`, `merge`, `layer`, `head`) and
safetensors storage (`save` / `load`).

Modules: `alti`, `plus`, `logit` (one result class each), `base` (what they share), `selections`
(pure tensor selections), `storage` (safetensors + JSON, no pickle).

Import rule (checked by import-linter, `[tool.importlinter]` in pyproject.toml): results may import
`alti_lens.render`, never the other way round at run time. A result is the object users hold, so
its drawing methods (`plot`, `to_html`, `coloured_text`, `to_dataframe`, ...) delegate to render
functions of plain tensors and strings; render names the result classes for type checking only.
Nothing here imports matplotlib, pandas or CircuitsVis (render imports them when it draws).
"""

from .alti import AltiResult
from .flow import FlowGraph
from .logit import AltiLogitResult
from .plus import AltiPlusResult

__all__ = ["AltiLogitResult", "AltiPlusResult", "AltiResult", "FlowGraph"]

# The classes are documented, pickled and printed under the package users import them from.
for _cls in (AltiResult, AltiPlusResult, AltiLogitResult, FlowGraph):
    _cls.__module__ = __name__
del _cls
