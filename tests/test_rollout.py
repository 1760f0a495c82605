import torch

from alti_lens.core.rollout import rollout


def test_rollout_is_the_chain_of_products() -> None:
    gen = torch.Generator().manual_seed(0)
    C = torch.rand(2, 4, 5, 5, generator=gen, dtype=torch.float64)
    C = C / C.sum(-1, keepdim=True)
    R = rollout(C)
    for b in range(2):
        expected = C[b, 0]
        for layer in range(4):
            if layer:
                expected = C[b, layer] @ expected
            torch.testing.assert_close(R[b, layer], expected, rtol=0, atol=1e-14)
    torch.testing.assert_close(R.sum(-1), torch.ones(2, 4, 5, dtype=torch.float64))
