"""Whisper's encoder on inputs of their own length, batched exactly.

transformers' ``WhisperEncoder.forward`` refuses any log-mel input but 3000 frames (30 s), so a
3 s clip would pay for 30 s. :func:`whisper_hidden_states` runs the same modules in the same
order — ``conv1``, GELU, ``conv2``, GELU, the first ``T`` positional embeddings, each layer, the
final ``layer_norm`` — on ``T`` frames. On a 30 s input it equals transformers' forward
(``output_hidden_states``) exactly.

Batches of different lengths are exact too: padded mel frames are zeros (what ``conv1``'s own
padding gives an input alone), ``conv1``'s outputs past each input's length are zeroed before
``conv2`` (as its own padding would be), and the layers' attention ignores padded frames.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def whisper_hidden_states(encoder: Any, mel: Any, mel_valid: Any, counts: np.ndarray, upto: int) -> list[Any]:
    """Hidden states ``0..upto`` ``(B, T, D)`` of ``encoder`` (a transformers ``WhisperEncoder``)
    on log-mels ``(B, n_mels, T_mel)``; ``mel_valid`` ``(B, T_mel)`` marks real mel frames
    (``None``: none padded), ``counts`` the valid output frames of each input. State 0 is the
    input embeddings; state ``L`` (the last layer) is after the final norm, as transformers
    gives it."""
    import torch
    import torch.nn.functional as F

    n_pos = encoder.embed_positions.num_embeddings
    h = F.gelu(encoder.conv1(mel))
    if mel_valid is not None:
        h = h * mel_valid[:, None, :].to(h.dtype)
    h = F.gelu(encoder.conv2(h)).permute(0, 2, 1)
    t = h.shape[1]
    if t > n_pos:
        raise ValueError(f"{t} frames is over the encoder's {n_pos} positions")
    h = h + encoder.embed_positions.weight[:t].to(h.dtype)
    mask = None
    if mel_valid is not None:
        valid = torch.arange(t, device=h.device)[None, :] < torch.as_tensor(counts, device=h.device)[:, None]
        mask = torch.zeros(len(counts), 1, 1, t, dtype=h.dtype, device=h.device)
        mask = mask.masked_fill(~valid[:, None, None, :], torch.finfo(h.dtype).min)
    layers = encoder.layers
    states = [h]
    for layer in layers[:upto]:
        h = layer(h, mask)
        if isinstance(h, tuple):  # older transformers return (hidden_states, ...)
            h = h[0]
        states.append(h)
    if upto == len(layers):
        states[-1] = encoder.layer_norm(h)
    return states
