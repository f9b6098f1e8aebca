"""Word vectors in the text tower, pure torch: projection, embedding initialisation, and
WordVecTower, a bag-of-vectors baseline (`model.text.kind: wordvec`).

The vectors themselves are read outside the model (mmdetect/data/vectors.py) and come in as
tensors; nothing here knows a file.
"""

from __future__ import annotations

import torch
from torch import nn

PROJECTIONS = ("pca", "random", "native")


def project_vectors(vectors: torch.Tensor, dim: int, mode: str, seed: int = 0) -> torch.Tensor:
    """[n, D] vectors -> [n, dim], centred: the top `dim` principal directions (`pca`), a
    seeded Gaussian projection (`random`), or the vectors as they are (`native`, D == dim).

    PCA is the default: with 300 -> 64 dims it keeps the directions along which words differ
    most, so neighbours stay neighbours; a random projection keeps distances only on average.
    Both are fixed (no learned parameter), so the encoder keeps its architecture. PCA is fit
    on the vectors given (the tokenizer's words): the directions along which they differ.
    """
    if mode not in PROJECTIONS:
        raise ValueError(f"init_vectors mode must be one of {list(PROJECTIONS)}, got {mode!r}")
    x = vectors.double()
    x = x - x.mean(0, keepdim=True)
    if mode == "native":
        if x.shape[1] != dim:
            raise ValueError(f"native vectors have {x.shape[1]} dims, the embedding has {dim}")
        return x.float()
    if mode == "pca":
        _, _, v = torch.linalg.svd(x, full_matrices=False)
        # The sign of a singular vector is arbitrary: fix it so the result is reproducible.
        v = v[:dim] * torch.sign(v[:dim].sum(1, keepdim=True) + 1e-30)
        out = x @ v.T  # fewer vectors (or dims) than `dim`: the missing directions are 0
        return torch.nn.functional.pad(out, (0, dim - out.shape[1])).float()
    g = torch.Generator().manual_seed(seed)
    proj = torch.randn(x.shape[1], dim, generator=g, dtype=torch.float64) / dim**0.5
    return (x @ proj).float()


@torch.no_grad()
def init_embedding_rows(
    embedding: nn.Embedding, ids: torch.Tensor, vectors: torch.Tensor, mode: str, seed: int = 0
) -> int:
    """Write the projected `vectors` into rows `ids` of `embedding`; returns the rows written.

    The rows are rescaled to the standard deviation the embedding was initialised with (0.02
    in BERT), so the initialised rows and the random ones keep one scale next to the position
    embeddings.
    """
    if len(ids) == 0:
        return 0
    values = project_vectors(vectors, embedding.embedding_dim, mode, seed)
    scale = embedding.weight.std() / values.std().clamp(min=1e-12)
    embedding.weight[ids.long()] = (values * scale).to(embedding.weight.dtype)
    return len(ids)


class WordVecTower(nn.Module):
    """Bag of word vectors + MLP: [B, L] ids -> (pooled [B, D], token states [B, L, D], mask).

    Each token's vector (`embedding_dim`, the vectors' native size when initialised from them)
    is pooled by masked mean and max (the max keeps one cue word from being diluted by a long
    description), then an MLP maps it to `hidden_size`. Token states are a linear map of the
    vectors, for the sequence-level fusions. A plain nn.Embedding rather than EmbeddingBag:
    the fusions need the per-token states, and it traces the same way as the BERT tower.
    """

    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int, dropout: float):
        super().__init__()
        self.embeddings = nn.Embedding(vocab_size, embedding_dim)
        nn.init.normal_(self.embeddings.weight, std=0.02)
        self.mlp = nn.Sequential(
            nn.Linear(2 * embedding_dim, hidden_size),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, hidden_size),
        )
        self.token_proj = nn.Linear(embedding_dim, hidden_size)
        self.out_dim = hidden_size

    @property
    def vocab_rows(self) -> int:
        return self.embeddings.num_embeddings

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        vec = self.embeddings(input_ids)
        mask = attention_mask.bool()
        weights = mask.unsqueeze(-1).to(vec.dtype)
        mean = (vec * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        floor = torch.finfo(vec.dtype).min
        top = vec.masked_fill(~mask.unsqueeze(-1), floor).amax(1)
        top = torch.where(mask.any(1, keepdim=True), top, torch.zeros_like(top))
        pooled = self.mlp(torch.cat([mean, top], dim=-1))
        return pooled, self.token_proj(vec), mask
