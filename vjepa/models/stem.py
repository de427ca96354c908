"""A convolutional patch embedding for small frames (``model.stem: conv``, issue 27).

The linear patch embedding of a ViT sees a 16 x 16 patch through one linear map: on 64-pixel
frames a small moving object is a fraction of one token and its motion a small change of that
token's projection. :class:`ConvStem` replaces the map with a small conv net that works at a
fine stride (``FINE`` = 4 pixels; the cost of a patch-4 ViT would be 16 x the
tokens) and only then pools to the token grid, so local shape and motion can be computed
before the tokens are formed. The transformer blocks, masks and positions are unchanged: the
stem returns ``[B, N, D]`` tokens in the same (t, h, w) order as :class:`PatchEmbed3D`.

No information crosses time steps (every conv after the tubelet projection has a temporal
kernel of 1, the norms are per position), so a context of the first time steps sees no
later frame. Spatial 3 x 3 convs do mix neighbouring tokens; with a mask whose kept tokens
are not whole time steps the caller zeroes the hidden pixels first
(:meth:`vjepa.models.encoder.VisionTransformer.forward` does).
"""

from __future__ import annotations

from torch import Tensor, nn

from vjepa.models.layers import LN_EPS


class ChannelNorm(nn.Module):
    """LayerNorm over the channels of ``[B, C, T, H, W]`` at every position (no mixing of
    positions or time steps)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=LN_EPS)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.movedim(1, -1)).movedim(-1, 1)


class ConvBlock(nn.Module):
    """Pre-norm residual block: norm, 3 x 3 conv, GELU, 1 x 1 conv (per time step)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = ChannelNorm(channels)
        self.conv1 = nn.Conv3d(channels, channels, kernel_size=(1, 3, 3), padding=(0, 1, 1))
        self.act = nn.GELU()
        self.conv2 = nn.Conv3d(channels, channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.act(self.conv1(self.norm(x))))


class ConvStem(nn.Module):
    """``[B, C, T, H, W]`` -> ``[B, N, D]``: tubelet conv at stride ``FINE``, ``DEPTH`` residual
    conv blocks at that resolution, a strided conv to the ``patch_size`` token grid. Takes the
    arguments of :class:`vjepa.models.layers.PatchEmbed3D`, which it replaces."""

    FINE = 4
    DEPTH = 2

    def __init__(self, *, patch_size: int, tubelet_size: int, embed_dim: int, in_chans: int = 3):
        super().__init__()
        fine, depth = self.FINE, self.DEPTH
        if patch_size % fine:
            raise ValueError(f"the conv stem's stride {fine} must divide patch_size {patch_size}")
        width = max(embed_dim // 2, 16)
        kernel = (tubelet_size, fine, fine)
        self.proj = nn.Conv3d(in_chans, width, kernel_size=kernel, stride=kernel)
        self.blocks = nn.ModuleList(ConvBlock(width) for _ in range(depth))
        self.norm = ChannelNorm(width)
        pool = patch_size // fine
        self.down = nn.Conv3d(width, embed_dim, kernel_size=(1, pool, pool), stride=(1, pool, pool))

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x)  # [B, c, t, H/fine, W/fine]
        for block in self.blocks:
            x = block(x)
        x = self.down(self.norm(x))  # [B, D, t, h, w]
        return x.flatten(2).transpose(1, 2)  # [B, N, D]
