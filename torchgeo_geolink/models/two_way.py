# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Two-way attention block that fuses image patches with OSM object tokens."""

from torch import Tensor, nn

__all__ = ('TwoWayAttentionBlock',)


class TwoWayAttentionBlock(nn.Module):
    """SAM-style two-way attention between image patches ``I`` and OSM tokens ``K``.

    1. ``K <- norm1(K + SelfAttn(K + P_K, K + P_K, K))`` over the valid OSM tokens;
    2. ``I <- norm2(I + Attn(q=I + P_I, k=K + P_K, v=K))``: patches attend to OSM
       objects (module ``cross_attn_token_to_image``, a name inherited from SAM);
    3. ``K <- norm3(K + Attn(q=K + P_K, k=I + P_I, v=I))``: objects attend to patches
       (module ``cross_attn_image_to_token``);
    4. ``K <- norm4(mlp(K))`` with ``mlp`` a single Linear, no activation and no
       residual, as in the reference (B22).

    A sample without any valid OSM token keeps its patches unchanged by step 2
    (``I <- norm2(I)``) and its (ignored) tokens are computed without a padding mask, so
    no row is fully masked and no NaN appears (B12).

    .. versionadded:: 0.1
    """

    def __init__(
        self, dim: int = 256, num_heads: int = 16, dropout: float = 0.1
    ) -> None:
        """Initialize a new TwoWayAttentionBlock.

        Args:
            dim: Token size.
            num_heads: Attention heads.
            dropout: Attention dropout.
        """
        super().__init__()
        self.self_attn = nn.MultiheadAttention(
            dim, num_heads, dropout=dropout, batch_first=True
        )
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = nn.MultiheadAttention(
            dim, num_heads, dropout=dropout, batch_first=True
        )
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = nn.MultiheadAttention(
            dim, num_heads, dropout=dropout, batch_first=True
        )
        self.norm3 = nn.LayerNorm(dim)
        self.mlp = nn.Linear(dim, dim)
        self.norm4 = nn.LayerNorm(dim)

    def forward(
        self,
        image: Tensor,
        image_pe: Tensor,
        tokens: Tensor,
        token_pe: Tensor,
        token_padding_mask: Tensor | None = None,
        return_attention: bool = False,
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Fuse patches and OSM tokens.

        Args:
            image: Patch tokens ``(B, L, dim)``.
            image_pe: Their position encodings ``(B or 1, L, dim)``.
            tokens: OSM tokens ``(B, M, dim)``.
            token_pe: Their position encodings ``(B, M, dim)``.
            token_padding_mask: ``(B, M)``, True where a token is padding.
            return_attention: Also return the OSM-to-patch attention of step 3.

        Returns:
            The updated patches ``(B, L, dim)``, the updated tokens ``(B, M, dim)`` and,
            on request, the attention of every OSM token over the patches ``(B, M, L)``
            (else None).
        """
        if token_padding_mask is None:
            has_tokens = None
            key_mask = None
        else:
            has_tokens = ~token_padding_mask.all(dim=1)
            key_mask = token_padding_mask & has_tokens[:, None]

        q = tokens + token_pe
        attn, _ = self.self_attn(
            q, q, tokens, key_padding_mask=key_mask, need_weights=False
        )
        tokens = self.norm1(tokens + attn)

        k = tokens + token_pe
        attn, _ = self.cross_attn_token_to_image(
            image + image_pe, k, tokens, key_padding_mask=key_mask, need_weights=False
        )
        if has_tokens is not None:
            attn = attn * has_tokens[:, None, None].to(attn.dtype)
        image = self.norm2(image + attn)

        attn, weights = self.cross_attn_image_to_token(
            tokens + token_pe, image + image_pe, image, need_weights=return_attention
        )
        tokens = self.norm3(tokens + attn)
        tokens = self.norm4(self.mlp(tokens))
        return image, tokens, weights
