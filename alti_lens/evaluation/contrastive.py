"""Contrastive explanations against linguistic evidence (Ferrando et al. 2023, ALTI-Logit §5).

The protocol of *Explaining How Transformers Use Context to Build Predictions* (ACL 2023), after
Yin & Neubig (2022): a prediction is explained as the logit difference `logit(target) −
logit(foil)` at one position (the grammatical continuation against the ungrammatical one, the
right name against the wrong one), and an explanation is good when it ranks the *evidence* token
— the input that decides between target and foil — first. Score: the mean reciprocal rank (MRR)
of the evidence token among the context tokens, and the share of examples where it is the top
token.

Two synthetic tasks with a known answer, built here (no model needed):

- `agreement_examples`: subject–verb agreement across prepositional phrases whose nouns have the
  opposite number (attractors): "the dog near the cats" → `runs` (target) vs `run` (foil); the
  evidence is the subject noun; the attractors are the distractors.
- `ioi_examples`: indirect-object identification (Wang et al. 2023): "when mary and john went to
  the store , john gave a drink to" → `mary` vs `john`; the evidence is the indirect object's
  mention (the paper's convention: its IOI data marks the IO name), and the repeated subject
  (S2) is reported as a second evidence token.

Every example carries interventions whose expected outcome is known (change the subject's number:
the verb must flip; change an attractor's: it must not), so the known answer can be confirmed on a
trained model (`intervention_rates`). `explain` runs every method on a batch (ALTI-Logit,
contrastive and target-only, ALTI, attention, attention rollout, norm, erasure (hidden from
attention with positions kept, the paper's; and deletion), gradient norm,
gradient × input, integrated gradients, random) and `evidence_ranks` scores them.

Conventions, stated once: candidates are every context token except BOS, the explained (last)
token included (as in the paper); higher scores mean more evidence for the target over the foil
(signed methods are ranked by their signed value, as the paper ranks them); ties share their
mean rank. ALTI-Logit's scores get the initial embedding's own logit (the direct path of the last
token, a separate component in `alti_logit`) added to the last token, as the paper's code does.
"""

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from math import nan

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from alti_lens import alti_logit, models
from alti_lens.errors import InputError, UnsupportedModelError
from alti_lens.models import HookedModel

from . import metrics
from .runs import last_layer_scores

# --- vocabularies (word-level: every word is one token of the task's own tokenizer) -----------

NOUNS = (
    ("dog", "dogs"), ("cat", "cats"), ("bird", "birds"), ("horse", "horses"),
    ("man", "men"), ("child", "children"), ("car", "cars"), ("tree", "trees"),
    ("house", "houses"), ("box", "boxes"),
)  # fmt: skip
VERBS = (
    ("runs", "run"),
    ("sleeps", "sleep"),
    ("eats", "eat"),
    ("waits", "wait"),
    ("moves", "move"),
)
ADJECTIVES = ("big", "small", "old", "red", "happy")
PREPOSITIONS = ("near", "behind", "with", "beside", "under")
NAMES = (
    "mary", "john", "anna", "tom", "lisa", "paul", "sara", "mark", "emma", "james", "kate", "david",
)  # fmt: skip
PLACES = ("store", "park", "school", "garden", "beach", "office")
OBJECTS = ("drink", "book", "ball", "gift", "key", "letter")
# IOI templates: {a} {b} the two names in order, {s} the repeated subject, {o} object, {p} place
IOI_TEMPLATES = (
    "when {a} and {b} went to the {p} , {s} gave a {o} to",
    "then {a} and {b} were at the {p} . {s} handed a {o} to",
    "after {a} and {b} met at the {p} , {s} showed a {o} to",
)
AGREEMENT_WORDS = (
    "the", ".", *(w for pair in NOUNS for w in pair), *(w for pair in VERBS for w in pair),
    *ADJECTIVES, *PREPOSITIONS,
)  # fmt: skip
IOI_WORDS = (
    *dict.fromkeys(w for t in IOI_TEMPLATES for w in t.split() if not w.startswith("{")),
    ".", *NAMES, *PLACES, *OBJECTS,
)  # fmt: skip

RANDOM = "random"
ALTI_LOGIT = "ALTI-Logit (contrastive)"
ALTI_LOGIT_TARGET = "ALTI-Logit (target only)"
# A variant outside spec §5: each MLP's logit (a component `alti_logit` gives no token) spread over
# the tokens by ALTI's rollout of the MLP's input — the heuristic of the paper's code's "mlp_alti"
# variants, in spirit (an MLP is not linear: this is a read-out, not a decomposition).
MLP_ROLLED = "ALTI-Logit + MLPs by rollout (contrastive)"
ERASURE = "erasure"  # hidden from attention, positions kept (the paper's)
DELETION = "erasure (deletion)"  # the token deleted, later positions renumbered
GRADIENT_METHODS = ("gradient norm", "gradient × input", "integrated gradients")


@dataclass(frozen=True)
class Variant:
    """A prefix (words, no BOS; its last word is the explained position) with the prediction
    expected of it: `logit(target) > logit(foil)` at the last position."""

    words: tuple[str, ...]
    target: str
    foil: str


@dataclass(frozen=True)
class ContrastiveExample:
    """One contrastive prediction with its known answer: `evidence` maps a name to the word index
    (in `clean.words`) of an evidence token; `interventions` maps a name to a changed prefix with
    the prediction that the evidence says it must get."""

    clean: Variant
    evidence: dict[str, int]
    distractors: tuple[int, ...]
    interventions: dict[str, Variant] = field(default_factory=dict)


def _noun_phrase(rng: random.Random, noun: str) -> list[str]:
    return ["the", *([rng.choice(ADJECTIVES)] if rng.random() < 0.5 else []), noun]


def agreement_sentence(rng: random.Random, attractors: int, opposite: bool | None) -> list[str]:
    """One training/evaluation sentence "the (adj) N (prep the (adj) N)^k V ." (`k` attractors;
    `opposite`: every attractor of the subject's other number, None: each number at random)."""
    plural = rng.random() < 0.5
    words = _noun_phrase(rng, rng.choice(NOUNS)[plural])
    for _ in range(attractors):
        number = (not plural) if opposite else (rng.random() < 0.5 if opposite is None else plural)
        words += [rng.choice(PREPOSITIONS), *_noun_phrase(rng, rng.choice(NOUNS)[number])]
    return [*words, rng.choice(VERBS)[plural], "."]


def _swap_number(word: str) -> str:
    for singular, plural in NOUNS:
        if word in (singular, plural):
            return plural if word == singular else singular
    raise InputError(f"_swap_number: {word!r} is not one of the task's nouns ({NOUNS}).")


def _agreement_example(words: list[str]) -> ContrastiveExample:
    """The known answer of a generated agreement sentence (see `agreement_examples`)."""
    prefix, verb = tuple(words[:-2]), words[-2]
    foil = next(v[1 - v.index(verb)] for v in VERBS if verb in v)
    nouns = [i for i, w in enumerate(prefix) if any(w in pair for pair in NOUNS)]
    subject, attractors = nouns[0], tuple(nouns[1:])
    flipped = list(prefix)
    flipped[subject] = _swap_number(prefix[subject])
    matched = [_swap_number(w) if i in attractors else w for i, w in enumerate(prefix)]
    return ContrastiveExample(
        clean=Variant(prefix, verb, foil),
        evidence={"subject": subject},
        distractors=attractors,
        interventions={
            "evidence": Variant(tuple(flipped), foil, verb),  # the verb must flip
            "distractor": Variant(tuple(matched), verb, foil),  # it must not
        },
    )


def agreement_examples(
    n: int, seed: int, attractors: Sequence[int] = (1, 2)
) -> list[ContrastiveExample]:
    """`n` agreement prefixes ending at the last attractor noun (the verb comes next), every
    attractor of the subject's opposite number; the number of attractors cycles over
    `attractors`. Target: the verb agreeing with the subject; foil: its other form; evidence: the
    subject noun; distractors: the attractor nouns."""
    rng = random.Random(seed)
    return [
        _agreement_example(agreement_sentence(rng, attractors[i % len(attractors)], True))
        for i in range(n)
    ]


def ioi_sentence(rng: random.Random) -> tuple[list[str], dict[str, str]]:
    """One IOI sentence (prefix words plus the answer, the IO name) and its roles
    (`io`, `s`, `o`, `p`, `template`); the IO comes first or second with equal chance."""
    io, s = rng.sample(NAMES, 2)
    a, b = (io, s) if rng.random() < 0.5 else (s, io)
    roles = {"io": io, "s": s, "o": rng.choice(OBJECTS), "p": rng.choice(PLACES)}
    template = rng.choice(IOI_TEMPLATES)
    words = template.format(a=a, b=b, s=s, o=roles["o"], p=roles["p"]).split()
    return [*words, io], roles | {"template": template}


def _replace(words: Sequence[str], old: str, new: str) -> tuple[str, ...]:
    return tuple(new if w == old else w for w in words)


def _ioi_example(
    words: list[str], roles: dict[str, str], other: tuple[str, str]
) -> ContrastiveExample:
    """The known answer of a generated IOI sentence; `other`: two names not in it."""
    prefix, io, s = tuple(words[:-1]), roles["io"], roles["s"]
    s_positions = [i for i, w in enumerate(prefix) if w == s]
    s2 = s_positions[-1]
    changed_s2 = list(prefix)
    changed_s2[s2] = io
    return ContrastiveExample(
        clean=Variant(prefix, io, s),
        evidence={"io": prefix.index(io), "s2": s2},
        distractors=(s_positions[0],),
        interventions={
            # a new name in the IO's place must become the answer
            "evidence": Variant(_replace(prefix, io, other[0]), other[0], s),
            # a new subject name (both mentions) must leave the answer alone
            "distractor": Variant(_replace(prefix, s, other[1]), io, other[1]),
            # S2 turned into the IO: the other name (S) becomes the answer
            "s2": Variant(tuple(changed_s2), s, io),
        },
    )


def ioi_examples(n: int, seed: int) -> list[ContrastiveExample]:
    """`n` IOI prefixes ending at "to". Target: the indirect object; foil: the subject (the
    repeated name); evidence: `io` (the IO's mention, the paper's convention) and `s2` (the
    repeated subject); distractor: the subject's first mention."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words, roles = ioi_sentence(rng)
        unused = [w for w in NAMES if w not in (roles["io"], roles["s"])]
        out.append(_ioi_example(words, roles, tuple(rng.sample(unused, 2))))  # type: ignore[arg-type]
    return out


# --- the model side ---------------------------------------------------------------------------


def token_id(model: HookedModel, word: str) -> int:
    """The id of `word`, which must be one token of the model's tokenizer."""
    tokens, _ = models.tokenize(model, word)
    ids = tokens[0, 1:] if tokens.shape[1] == 2 else tokens[0]
    if ids.numel() != 1:
        raise InputError(
            f"token_id: {word!r} is {ids.numel()} tokens for this tokenizer, expected one word = "
            "one token. Fix: use a word-level tokenizer that has the task's words "
            "(AGREEMENT_WORDS / IOI_WORDS)."
        )
    return int(ids[0])


def encode(
    model: HookedModel, variants: Sequence[Variant]
) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, " batch"], Int[Tensor, " batch"]]:
    """Token ids (`[BOS, words...]`, all of one length), target and foil ids of `variants`."""
    tokens, mask = models.tokenize(model, [" ".join(v.words) for v in variants])
    lengths = {len(v.words) for v in variants}
    if not bool(mask.all()) or len(lengths) != 1 or tokens.shape[1] != lengths.pop() + 1:
        raise InputError(
            "encode: expected prefixes of one length, each word one token after a BOS token; got "
            f"lengths {sorted({len(v.words) for v in variants})} and {tuple(tokens.shape)} "
            "tokens. Fix: group the examples by length (`by_length`) and use the task's tokenizer."
        )
    ids = {w: token_id(model, w) for w in {x for v in variants for x in (v.target, v.foil)}}
    target = torch.tensor([ids[v.target] for v in variants])
    foil = torch.tensor([ids[v.foil] for v in variants])
    return tokens, target, foil


def logit_difference(
    logits: Float[Tensor, "batch pos d_vocab"],
    target: Int[Tensor, " batch"],
    foil: Int[Tensor, " batch"],
) -> Float[Tensor, " batch"]:
    """`logit(target) − logit(foil)` at the last position of each sequence."""
    last = logits[:, -1]
    return last.gather(1, target[:, None])[:, 0] - last.gather(1, foil[:, None])[:, 0]


def _hidden_key_logits(
    model: HookedModel, tokens: Int[Tensor, "variant pos"], hidden: Int[Tensor, " variant"]
) -> Float[Tensor, "variant pos d_vocab"]:
    """Logits with key `hidden[v]` removed from every attention row of variant `v` (its weight
    set to 0 and the row renormalised: the same as an attention mask over that token, with every
    position id kept), through the `hook_pattern` hook points of TransformerLens models."""
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(models.n_layers(model))]
    if any(name not in model.hook_dict for name in names):
        raise UnsupportedModelError(
            f"erasure with positions kept needs the attention-pattern hooks {names[0]}…, which "
            f"{type(model).__name__} does not have. Fix: use erasure(..., keep_positions=False)."
        )
    rows = torch.arange(len(hidden))

    def hide(pattern: Tensor, hook: object = None) -> Tensor:
        pattern = pattern.clone()
        pattern[rows, :, :, hidden.to(pattern.device)] = 0.0
        return pattern / pattern.sum(-1, keepdim=True)  # BOS is never hidden: no row is empty

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            out = model.run_with_hooks(tokens, fwd_hooks=[(name, hide) for name in names])
    finally:
        model.train(was_training)
    return out.detach().cpu()


def erasure(
    model: HookedModel,
    tokens: Int[Tensor, "batch pos"],
    target: Int[Tensor, " batch"],
    foil: Int[Tensor, " batch"],
    *,
    keep_positions: bool = True,
) -> Float[Tensor, "batch pos"]:
    """Occlusion: the drop of the logit difference when token `j` is erased, for every `j` but
    BOS (NaN there). `keep_positions`: token `j` is hidden from every attention row, position ids
    unchanged (Yin & Neubig's `erasure_scores` with an attention mask, which the ALTI-Logit paper
    uses); otherwise the attention mask is passed to the model, which on a TransformerLens bridge
    also renumbers the later positions — the same as deleting the token (tested)."""
    batch, n = tokens.shape
    clean = logit_difference(models.logits(model, tokens).double(), target, foil)
    hidden = torch.arange(1, n)  # variant k hides token k + 1
    masks = torch.ones(n - 1, n, dtype=torch.long)
    masks[torch.arange(n - 1), hidden] = 0
    out = torch.full((batch, n), torch.nan, dtype=torch.float64)
    for b in range(batch):
        rows = tokens[b : b + 1].expand(n - 1, n)
        if keep_positions:
            erased = _hidden_key_logits(model, rows, hidden).double()
        else:
            erased = models.logits(model, rows, masks).double()
        target_b, foil_b = target[b].expand(n - 1), foil[b].expand(n - 1)
        out[b, 1:] = clean[b] - logit_difference(erased, target_b, foil_b)
    return out


def gradient_scores(
    model: HookedModel,
    tokens: Int[Tensor, "batch pos"],
    target: Int[Tensor, " batch"],
    foil: Int[Tensor, " batch"],
    steps: int = 32,
) -> dict[str, Float[Tensor, "batch pos"]]:
    """Gradient norm (L2), gradient × input and integrated gradients (`steps` points, all-zero
    token embeddings as the baseline) of the logit difference w.r.t. the token embeddings."""

    def forward() -> Tensor:
        return logit_difference(model(tokens), target, foil)

    got = models.embedding_gradients(model, forward, ("hook_embed",), steps)["hook_embed"]
    return dict(zip(GRADIENT_METHODS, (got.norm, got.times_input, got.integrated), strict=True))


def _alti_logit_scores(
    model: HookedModel, tokens: Tensor, target: Tensor, foil: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """ALTI-Logit's token scores with the embedding's direct logit added to the last token (the
    paper's convention); the same plus every MLP's logit share carried to the tokens by the ALTI
    rollout of the MLP's input (`Σ_l mlp_l · R^l[t, k]`, see `MLP_ROLLED`); and the ALTI rollout
    row of the last position."""
    result = alti_logit(model, tokens, target=target, foil=foil)
    scores = result.scores.double().clone()
    scores[:, -1] += result.components["embedding"].double()
    rollout = result.alti.rollout.double()  # [batch, layer, q, k]: mixing after layer l
    mlps = result.layer_components["mlps"].double()  # [batch, layer], logit units
    rolled = scores + torch.einsum("bl,blk->bk", mlps, rollout[:, :, -1])
    return scores, rolled, rollout[:, -1, -1]


def explain(
    model: HookedModel,
    tokens: Int[Tensor, "batch pos"],
    target: Int[Tensor, " batch"],
    foil: Int[Tensor, " batch"],
    *,
    ig_steps: int = 32,
    generator: torch.Generator | None = None,
) -> dict[str, Float[Tensor, "batch pos"]]:
    """Every method's score of every token for `logit(target) − logit(foil)` at the last
    position (unpadded sequences of one length, BOS first). ALTI, attention (last layer, head
    mean), attention rollout and norm are not contrastive: they explain the last position's
    representation, the same for any target."""
    contrastive, with_mlps, rollout_row = _alti_logit_scores(model, tokens, target, foil)
    target_only, _, _ = _alti_logit_scores(model, tokens, target, None)
    rows = {k: v[:, -1].double() for k, v in last_layer_scores(model, tokens).items()}
    if not torch.allclose(rows["ALTI"], rollout_row):  # the same `alti` call, two ways
        raise RuntimeError("ALTI's rollout row differs between alti and alti_logit")
    out = {ALTI_LOGIT: contrastive, MLP_ROLLED: with_mlps, ALTI_LOGIT_TARGET: target_only, **rows}
    out[ERASURE] = erasure(model, tokens, target, foil)
    out[DELETION] = erasure(model, tokens, target, foil, keep_positions=False)
    out |= gradient_scores(model, tokens, target, foil, ig_steps)
    out[RANDOM] = torch.rand(tokens.shape, generator=generator, dtype=torch.float64)
    return out


# --- metrics ----------------------------------------------------------------------------------


def evidence_rank(
    scores: Float[Tensor, " pos"], evidence: int, candidates: Bool[Tensor, " pos"]
) -> tuple[float, float]:
    """(rank, top-1) of position `evidence` among the `candidates` by descending score: rank =
    1 + the number of candidates scored higher + half the others tied with it (their mean rank);
    top-1 = the chance that it comes first when ties are broken at random."""
    value = scores[evidence]
    pool = scores[candidates]
    if not bool(candidates[evidence]) or bool(torch.isnan(pool).any()):
        raise InputError(
            f"evidence_rank: position {evidence} must be a candidate and the candidates' scores "
            "finite. Fix: mark the evidence as a candidate; leave NaN (e.g. BOS) out of them."
        )
    higher = int((pool > value).sum())
    tied = int((pool == value).sum()) - 1
    return 1.0 + higher + tied / 2, (1.0 / (tied + 1)) if higher == 0 else 0.0


# --- the experiment ---------------------------------------------------------------------------


def by_length(examples: Sequence[ContrastiveExample]) -> dict[int, list[int]]:
    """Example indices grouped by prefix length (each group runs as one unpadded batch)."""
    return _groups([len(example.clean.words) for example in examples])


def _groups(lengths: Sequence[int]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for i, length in enumerate(lengths):
        groups.setdefault(length, []).append(i)
    return groups


@dataclass
class EvidenceReport:
    """Per example (in the order given): the model's logit difference, and per method and
    evidence name the reciprocal rank and top-1 of the evidence token."""

    logit_difference: list[float]
    reciprocal_rank: dict[str, dict[str, list[float]]]
    top1: dict[str, dict[str, list[float]]]

    @property
    def accuracy(self) -> float:
        """Share of examples where the model prefers the target (`logit_difference > 0`)."""
        return sum(d > 0 for d in self.logit_difference) / max(1, len(self.logit_difference))


def _record(
    report: EvidenceReport,
    scores: dict[str, Tensor],
    examples: Sequence[ContrastiveExample],
    rows: Sequence[int],
) -> None:
    """Rank every example's evidence tokens under every method into `report` (at `rows`)."""
    n = len(report.logit_difference)
    for row, (b, example) in zip(rows, enumerate(examples), strict=True):
        candidates = torch.ones(len(example.clean.words) + 1, dtype=torch.bool)
        candidates[0] = False  # BOS: never evidence, an attention sink for several measures
        for method, values in scores.items():
            for name, word in example.evidence.items():
                rank, top = evidence_rank(values[b], word + 1, candidates)
                rr = report.reciprocal_rank.setdefault(method, {}).setdefault(name, [nan] * n)
                rr[row] = 1.0 / rank
                report.top1.setdefault(method, {}).setdefault(name, [nan] * n)[row] = top


def evidence_ranks(
    model: HookedModel,
    examples: Sequence[ContrastiveExample],
    *,
    ig_steps: int = 32,
    seed: int = 0,
    batch_size: int = 64,
) -> EvidenceReport:
    """Every method of `explain` on every example; the reciprocal rank and top-1 of each
    evidence token (see the module docstring for the conventions). All examples count, also
    those the model gets wrong (the paper's protocol); `accuracy` says how many those are."""
    generator = torch.Generator().manual_seed(seed)
    report = EvidenceReport([0.0] * len(examples), {}, {})
    for indices in by_length(examples).values():
        for start in range(0, len(indices), batch_size):
            rows = indices[start : start + batch_size]
            chunk = [examples[i] for i in rows]
            tokens, target, foil = encode(model, [e.clean for e in chunk])
            difference = logit_difference(models.logits(model, tokens).double(), target, foil)
            for row, value in zip(rows, difference.tolist(), strict=True):
                report.logit_difference[row] = value
            scores = explain(model, tokens, target, foil, ig_steps=ig_steps, generator=generator)
            _record(report, scores, chunk, rows)
    return report


def _prefers(model: HookedModel, variants: Sequence[Variant]) -> list[bool]:
    """Per variant: does the model put `target` above `foil` at the last position?"""
    out = [False] * len(variants)
    for rows in _groups([len(v.words) for v in variants]).values():
        tokens, target, foil = encode(model, [variants[i] for i in rows])
        difference = logit_difference(models.logits(model, tokens).double(), target, foil)
        for i, d in zip(rows, difference.tolist(), strict=True):
            out[i] = d > 0
    return out


def intervention_rates(
    model: HookedModel, examples: Sequence[ContrastiveExample]
) -> dict[str, float]:
    """Confirmation of the known answer by intervention: `accuracy` (clean target above foil),
    and per intervention name the share of the examples the model gets right whose intervened
    prefix gets the prediction the evidence predicts (e.g. the subject's number changed: the
    verb flips; an attractor's changed: it does not)."""
    correct = _prefers(model, [e.clean for e in examples])
    kept = [e for e, ok in zip(examples, correct, strict=True) if ok]
    out = {"accuracy": sum(correct) / max(1, len(correct)), "n": float(len(examples))}
    for name in dict.fromkeys(k for e in kept for k in e.interventions):
        variants = [e.interventions[name] for e in kept if name in e.interventions]
        out[name] = sum(_prefers(model, variants)) / max(1, len(variants))
    return out


def logit_shares(model: HookedModel, examples: Sequence[ContrastiveExample]) -> dict[str, float]:
    """Where contrastive ALTI-Logit finds the logit difference: the mean over examples of each
    part's share of it — `tokens` (the scores of every input token, attention paths), each of
    `alti_logit`'s components (the initial embedding's direct logit, attention biases, MLPs, the
    final norm's bias, the unembedding bias) — and the mean difference itself. The parts add up to
    the difference exactly (checked by `alti_logit`), so the shares sum to 1."""
    parts: dict[str, list[float]] = {}
    for rows in by_length(examples).values():
        tokens, target, foil = encode(model, [examples[i].clean for i in rows])
        result = alti_logit(model, tokens, target=target, foil=foil)
        total = result.logit.double()
        pieces = {"tokens": result.scores.double().sum(-1), **result.components}
        for name, value in pieces.items():
            parts.setdefault(name, []).extend((value.double() / total).tolist())
        parts.setdefault("logit difference", []).extend(total.tolist())
    return {name: sum(v) / len(v) for name, v in parts.items()}


def summarise(values: Sequence[float], groups: Sequence[int] | None = None) -> dict[str, float]:
    """Mean with its bootstrap 95% interval (`lo`, `hi`) — the JSON shape of the report."""
    _, lo, hi = metrics.mean_interval(values, groups=groups)
    return {"mean": sum(values) / len(values), "lo": lo, "hi": hi}
