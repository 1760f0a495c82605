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
# # Hub models: GPT-2, Marian (opus-mt) and your own checkpoints
#
# `alti_lens` works on the TransformerLens models you already have. Three ways to get one:
#
# ```python
# from transformer_lens.model_bridge import TransformerBridge
# model = TransformerBridge.boot_transformers("gpt2")           # TransformerLens, any supported model
# model = alti_lens.load_model("gpt2")                          # the same, with a clear offline error
# model = alti_lens.load_model("path/to/checkpoint_dir")        # a local Hugging Face directory
# ```
#
# and with TransformerLens 3.x, the deprecated `HookedTransformer.from_pretrained("gpt2")` too
# (mind its weight processing: `from_pretrained` centres weights and folds biases by default, which
# changes ALTI's numbers; `alti_lens` warns and records it. Use `from_pretrained_no_processing`).
#
# This tutorial tries the hub models first. Where the hub cannot be reached (CI, an offline
# laptop), `load_model` says so at once (`ModelUnavailableError`) and the tutorial falls back to the
# built-in models, so it runs everywhere. Set `ALTI_LENS_DECODER` / `ALTI_LENS_TRANSLATOR` to try
# other models.

# %%
import os
from pathlib import Path

from alti_lens import ModelUnavailableError, alti, alti_logit, alti_plus, load_model

OUT = Path(os.environ.get("ALTI_LENS_TUTORIAL_OUT", "tutorial_output"))
OUT.mkdir(parents=True, exist_ok=True)


def load_or_builtin(name: str, builtin: str):
    try:
        return name, load_model(name)
    except ModelUnavailableError as err:
        print(f"{name} is not available here ({str(err)[:120]}...); using {builtin}")
        return builtin, load_model(builtin)


decoder_name, decoder = load_or_builtin(
    os.environ.get("ALTI_LENS_DECODER", "gpt2"), "demo-induction"
)

# %% [markdown]
# ## A decoder-only model
# The same calls work on every decoder-only family (GPT-2, Llama, Mistral, Qwen, Pythia, Gemma-2...).

# %%
if decoder_name == "gpt2":
    text, target = "When Mary and John went to the store, John gave a drink to", " Mary"
    foil = " John"
else:
    text, target, foil = "king river music window king river", "music", "window"
result = alti(decoder, text)
print(result)
print(result.top_sources(-1, k=5))
logit = alti_logit(decoder, text, target, foil=foil)  # explain the logit difference target − foil
print("logit difference", round(float(logit.logit[0]), 3), "top tokens", logit.top_sources(3))

# %% [markdown]
# Models in reduced precision: `alti_lens` decomposes in float32 by default (pass `dtype=torch.float64`
# for the last digits), whatever the model's own dtype, and runs the model on its own device.
#
# ## An encoder-decoder (ALTI+)
# Marian (`Helsinki-NLP/opus-mt-en-de`), BART, M2M100/NLLB and T5 bridges are supported.

# %%
translator_name, translator = load_or_builtin(
    os.environ.get("ALTI_LENS_TRANSLATOR", "Helsinki-NLP/opus-mt-en-de"), "demo-translator"
)
source = (
    "The cat sat on the mat."
    if translator_name.startswith("Helsinki")
    else "the old cat sees a dog"
)
plus = alti_plus(translator, source)  # no target: translate greedily, then explain
print(plus)
print("mean source contribution", round(float(plus.source_contribution[0].mean()), 3))

# %% [markdown]
# ## Your own checkpoint directory
# Any directory written by `save_pretrained` (model and tokenizer) loads offline. Here we copy a
# built-in model's directory to show it; with a hub model, `model.original_model.save_pretrained(d)`
# and `model.tokenizer.save_pretrained(d)` on a machine with internet produce such a directory.

# %%
import shutil

from alti_lens.demo import builtin_path

local = OUT / "my_checkpoint"
shutil.copytree(builtin_path("demo-induction"), local, dirs_exist_ok=True)
mine = load_model(str(local))
print(alti(mine, "king river music king river").top_sources(-1, k=3))

# %% [markdown]
# The command line does the same: `alti-lens explain --model gpt2 "The cat sat on the"` and
# `alti-lens translate --model Helsinki-NLP/opus-mt-en-de --source "The cat sat on the mat."`.
