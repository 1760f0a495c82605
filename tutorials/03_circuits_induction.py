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
# # Circuit analysis: finding the induction circuit with head-level ALTI and ALTI-Logit
#
# An induction circuit continues a repeated sequence `... A B ... A` with `B` in two steps: a
# *previous-token head* (layer 0) copies each token's predecessor into its representation, and an
# *induction head* (layer 1) at the second `A` attends to the token whose predecessor was `A` —
# that is `B` — and copies it to the output. The built-in `demo-induction` model was trained on
# repeated random word sequences; here we find its circuit with `alti_lens` alone.
#
# Tools: `alti(..., per_head=True)` splits each row of `C^l` over (head, source) parts and the
# residual; `alti_logit` decomposes the predicted token's logit over input tokens, layers and heads.

# %%
import os
from pathlib import Path

import torch

from alti_lens import alti, alti_logit, load_model
from alti_lens.demo import induction_sequences

OUT = Path(os.environ.get("ALTI_LENS_TUTORIAL_OUT", "tutorial_output"))
OUT.mkdir(parents=True, exist_ok=True)

model = load_model("demo-induction")
words = induction_sequences(1, seed=7, min_len=8, max_len=8)[
    0
]  # held out: training used other seeds
text = " ".join(words)
k = len(words) // 2
print(text)

# %% [markdown]
# ## Layer 0: a previous-token head
# For every position `i > 0`, how much of head `h`'s share of row `i` comes from position `i - 1`?

# %%
result = alti(model, text, per_head=True)
heads = result.head_contributions[0]  # [layer, head, query_pos, key_pos]
n = heads.shape[-1]
rows = torch.arange(1, n)
prev_share = heads[0][:, rows, rows - 1].mean(-1)  # per head, mean over positions
for h, share in enumerate(prev_share.tolist()):
    print(f"layer 0 head {h}: mean contribution from the previous token {share:.3f}")
prev_head = int(prev_share.argmax())
print(f"previous-token head: L0H{prev_head}")

# %% [markdown]
# ## Layer 1: an induction head
# In the second copy (token positions `k+1 ... 2k`, after BOS), the induction target of position
# `i` is position `i - k + 1`: the token that followed the earlier occurrence of the current token.

# %%
second = torch.arange(k + 1, n)
targets = second - k + 1
ind_share = heads[1][:, second, targets].mean(-1)
for h, share in enumerate(ind_share.tolist()):
    print(f"layer 1 head {h}: mean contribution from the induction target {share:.3f}")
ind_head = int(ind_share.argmax())
print(f"induction head: L1H{ind_head}")

# %% [markdown]
# ## The prediction, decomposed: ALTI-Logit
# At the last position the model should predict the word that followed its earlier occurrence.
# `alti_logit` splits that logit over input tokens (through the rollout) and over layers and heads;
# the scores plus the non-token components add up exactly to the model's logit (checked on every call).

# %%
expected = words[k]  # the last token is words[k - 1]; before, it was followed by words[k]
position = n - 1
logit = alti_logit(model, text, expected, position=position)
print(logit)
top = logit.top_sources(3)
print("tokens that raised the logit of", repr(expected), top)
total = float(logit.scores.sum()) + sum(float(v[0]) for v in logit.components.values())
print(f"identity: {total:.4f} == {float(logit.logit[0]):.4f}")

# %%
by_head = logit.head_scores[0].sum(-1)  # [layer, head]: logit share routed by each head
for layer in range(by_head.shape[0]):
    print(
        f"layer {layer}:", " ".join(f"H{h} {v:+.2f}" for h, v in enumerate(by_head[layer].tolist()))
    )
best = divmod(int(by_head.abs().argmax()), by_head.shape[1])
print(f"head that moves the most logit: L{best[0]}H{best[1]}")

# %% [markdown]
# The head that moves most of the logit in layer 1 should be the induction head found above, and the
# input token it draws on should be the earlier `expected` token (position `k`, after BOS).

# %%
source_of_best = int(logit.head_scores[0, best[0], best[1]].argmax())
print("its top input token:", source_of_best, repr(logit.str_tokens[0][source_of_best]))
fig = result.plot(layer=1)
fig.savefig(OUT / "induction_layer1.png", dpi=100, bbox_inches="tight")
logit.save_html(OUT / "induction_logit_report.html")
