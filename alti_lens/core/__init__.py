"""The pure math of alti_lens: torch, einops and jaxtyping only, tested on random tensors.

- `handover`: the read-out → math hand-over types (`BlockKind`, `BlockTensors`, `NormTensors`,
  `FinalTensors`): the one module of `core` that `readout/` imports.
- `decompose`: one attention sub-block in the common form `T_i(x_j) = r_i Σ_h A^h_ij V[j,h] +
  δ_ij R_j` (spec §2), and the exactness check's sum.
- `measures`: the contribution measure of one layer, token level (spec §3); `heads`: the same
  measure per (head, source) part, with the one scorer `measures.proximity`.
- `support`: which keys each query row attends to, and each row's attended key range.
- `kernels`: `dispatch` (the one choice of distance kernel, from the `kernel` keyword and the
  environment), `fused` (the C++ CPU kernel, `distances.cpp`, loaded with ctypes), `triton`
  (the CUDA kernel).
- `rollout` (spec §4) and `logit` (ALTI-Logit, spec §5).

Import rule: nothing in `alti_lens.core` imports `alti_lens.readout`, `pipeline`, `_measure`,
`results`, `api`, `plus`, `logit_api`, `transformer_lens` or `transformers`; dependencies point
into `core`, never out of it (besides `alti_lens._types` and `alti_lens.errors`, which import
nothing of the package). Nothing is imported here, so importing one module of `core` loads only
what it needs.
"""
