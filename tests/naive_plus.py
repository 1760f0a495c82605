"""A deliberately naive, loop-by-loop ALTI+ extended rollout (spec §4), for comparison in float64.

Written from the spec's recurrence with explicit sums over every index, no matrix products.
"""

import torch
from torch import Tensor


def naive_extended_rollout(C_enc: Tensor, C_sa: Tensor, C_ca: Tensor) -> Tensor:
    """`C_enc [Le, S, S]`, `C_sa [Ld, T, T]`, `C_ca [Ld, T, S+1]` -> `R [Ld, T, S+T]`."""
    n_enc, S = C_enc.shape[0], C_enc.shape[1]
    n_dec, T = C_sa.shape[0], C_sa.shape[1]
    # R_enc = C_enc^{Le} ... C_enc^1, one layer at a time, entry by entry
    R_enc = [[float(C_enc[0, i, j]) for j in range(S)] for i in range(S)]
    for layer in range(1, n_enc):
        R_enc = [
            [sum(float(C_enc[layer, i, k]) * R_enc[k][j] for k in range(S)) for j in range(S)]
            for i in range(S)
        ]
    # R^0 = [0 | I]
    R = [[0.0] * S + [1.0 if k == t else 0.0 for k in range(T)] for t in range(T)]
    out = []
    for layer in range(n_dec):
        new = []
        for t in range(T):
            rho = float(C_ca[layer, t, S])
            row = []
            for k in range(S + T):
                from_source = (
                    sum(float(C_ca[layer, t, j]) * R_enc[j][k] for j in range(S)) if k < S else 0.0
                )
                from_target = rho * sum(float(C_sa[layer, t, u]) * R[u][k] for u in range(T))
                row.append(from_source + from_target)
            new.append(row)
        R = new
        out.append(R)
    return torch.tensor(out, dtype=torch.float64)


def assert_rollout_matches_naive(result, b: int) -> None:
    """Sequence `b` of an `AltiPlusResult`: its extended rollout, restricted to real positions,
    equals `naive_extended_rollout` of its own per-layer matrices (float64, 1e-12)."""
    s = int(result.source_attention_mask[b].sum())
    t = int(result.target_attention_mask[b].sum())
    S = result.source_tokens.shape[1]
    cross = torch.cat(
        [result.cross_contributions[b, :, :t, :s], result.cross_contributions[b, :, :t, S:]],
        dim=-1,
    )
    naive = naive_extended_rollout(
        result.encoder_contributions[b, :, :s, :s],
        result.decoder_contributions[b, :, :t, :t],
        cross,
    )
    ours = torch.cat([result.rollout[b, :, :t, :s], result.rollout[b, :, :t, S : S + t]], dim=-1)
    torch.testing.assert_close(ours, naive, rtol=0, atol=1e-12)
