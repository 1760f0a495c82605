"""Drawing results: terminal text, HTML, the interactive report, plots, CircuitsVis, tables.

Modules: `text` (ANSI-coloured tokens, the command line's summaries), `html` (tokens as HTML spans,
the notebook view of a result), `scale` (the colour scales both share), `report` (the offline
interactive HTML report and its page assets), `plot` (matplotlib figures, returned, never shown),
`circuitsvis` (the CircuitsVis widget), `tables` (pandas DataFrames).

Import rule (checked by import-linter, `[tool.importlinter]` in pyproject.toml): render never
imports `alti_lens.results` at run time, only under `TYPE_CHECKING`; the result classes import
render and call it from their methods. Render functions take plain tensors and strings, or read a
result's fields (the report and the summaries), so they are tested without a model, and results
stay pure data. matplotlib, pandas and CircuitsVis are imported here only, inside the function that
needs them: `import alti_lens` and the results never load them.

Nothing is imported by this `__init__`: `alti_lens.render.text` does not load the report.
"""
