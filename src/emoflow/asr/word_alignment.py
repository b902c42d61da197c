"""Whisper word timestamps without keeping every attention map (transformers backend).

transformers times words with dynamic time warping over the cross-attention of a few
"alignment heads", but to get them it asks ``generate`` for *every* attention map: all
encoder self-attentions (layers × heads × 1500 × 1500 floats, 5.8 GB at large-v3 size) and
every decoder layer's cross-attention at every step. :func:`install` keeps transformers' own
flow (segments, seeking, DTW, word grouping) and changes only where the alignment heads'
cross-attentions come from: generation runs without attention outputs, then one
teacher-forced decoder pass over the generated tokens computes the attention of the
alignment heads only, from their queries and keys (openai-whisper's ``find_alignment`` does
the same with hooks). The decoder is causal, so position *t* sees the same tokens in both
passes: the weights, and so the word times, are the same.

Thread-safe: the hooks stay installed and act only in the thread that asked for a capture;
the encoder output is kept per thread.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

log = logging.getLogger(__name__)

_STATE = threading.local()  # .encoder: last encoder output; .capture: dict while a pass runs
_MARK = "_emoflow_low_memory_alignment"


class _Stop(Exception):
    """Raised by a hook once the last needed layer's queries are captured."""


class _AlignmentOutputs:
    """The part of ``generate``'s output that ``_extract_token_timestamps`` reads: the
    sequences and, per decoder layer, cross-attention weights ``(batch, heads, tokens, frames)``
    for the alignment heads only (no beam indices: teacher forcing already follows the chosen
    beam)."""

    def __init__(self, sequences: Any, cross_attentions: tuple[tuple[Any, ...], ...]) -> None:
        self.sequences = sequences
        self.cross_attentions = cross_attentions

    def __contains__(self, key: object) -> bool:
        return False


def install(model: Any) -> bool:
    """Make ``model.generate(..., return_token_timestamps=True)`` compute the alignment heads'
    cross-attentions by a teacher-forced pass instead of keeping every attention map.
    Idempotent. Returns False (and changes nothing) when the model is not a transformers
    Whisper this works with."""
    if getattr(model, _MARK, False):
        return True
    cls = type(model)
    extract = getattr(cls, "_extract_token_timestamps", None)
    set_outputs = getattr(cls, "_set_return_outputs", None)
    try:
        encoder = model.get_encoder()
        decoder = model.get_decoder()
        attns = [layer.encoder_attn for layer in decoder.layers]
        for a in attns:
            _ = (a.q_proj, a.k_proj, a.num_heads, a.head_dim, a.scaling)
    except AttributeError:
        return False
    if extract is None or set_outputs is None:
        return False

    def set_return_outputs(
        return_dict_in_generate: Any,
        return_token_timestamps: Any,
        logprob_threshold: Any,
        generation_config: Any,
    ) -> Any:
        out = set_outputs(
            return_dict_in_generate=return_dict_in_generate,
            return_token_timestamps=return_token_timestamps,
            logprob_threshold=logprob_threshold,
            generation_config=generation_config,
        )
        if return_token_timestamps:
            generation_config.output_attentions = False  # see extract_token_timestamps
        return out

    def extract_token_timestamps(
        generate_outputs: Any,
        alignment_heads: Any,
        time_precision: float = 0.02,
        num_frames: Any = None,
        num_input_ids: int | None = None,
    ) -> Any:
        if getattr(generate_outputs, "cross_attentions", None) is not None:  # collected anyway
            return extract(
                model, generate_outputs, alignment_heads, time_precision, num_frames, num_input_ids
            )
        encoder_states = getattr(_STATE, "encoder", None)
        _STATE.encoder = None
        if encoder_states is None:
            raise RuntimeError(
                "word timestamps: no encoder output was seen for this generate call "
                "(generate from input_features, not encoder_outputs)"
            )
        weights, heads = _alignment_weights(
            decoder, attns, generate_outputs.sequences, encoder_states, alignment_heads
        )
        return extract(
            model,
            _AlignmentOutputs(generate_outputs.sequences, (weights,)),
            heads,
            time_precision,
            num_frames,
            num_input_ids,
        )

    def keep_encoder_output(module: Any, args: Any, output: Any) -> None:
        _STATE.encoder = output[0]

    def capture_queries(index: int) -> Any:
        def hook(module: Any, args: Any, output: Any) -> None:
            cap = getattr(_STATE, "capture", None)
            if cap is None:
                return
            cap["queries"][index] = output
            if index == cap["last"]:
                raise _Stop

        return hook

    encoder.register_forward_hook(keep_encoder_output)
    for i, a in enumerate(attns):
        a.q_proj.register_forward_hook(capture_queries(i))
    model._set_return_outputs = set_return_outputs
    model._extract_token_timestamps = extract_token_timestamps
    setattr(model, _MARK, True)
    return True


def _alignment_weights(
    decoder: Any, attns: list[Any], sequences: Any, encoder_states: Any, alignment_heads: Any
) -> tuple[tuple[Any, ...], list[list[int]]]:
    """Cross-attention weights of the alignment heads for every input position but the last
    (what generation saw), one tensor per decoder layer (empty for layers without alignment
    heads), and the alignment heads renumbered to index those tensors."""
    import torch

    by_layer: dict[int, list[int]] = {}
    for layer, head in alignment_heads:
        by_layer.setdefault(int(layer), [])
        if int(head) not in by_layer[int(layer)]:
            by_layer[int(layer)].append(int(head))
    heads = [[int(lay), by_layer[int(lay)].index(int(h))] for lay, h in alignment_heads]

    tokens = sequences[:, :-1]
    batch, steps = tokens.shape
    if encoder_states.shape[0] != batch:
        if batch % encoder_states.shape[0]:
            raise RuntimeError(
                f"word timestamps: {batch} sequences for {encoder_states.shape[0]} encoder outputs"
            )
        encoder_states = encoder_states.repeat_interleave(batch // encoder_states.shape[0], dim=0)
    frames = encoder_states.shape[1]

    cap: dict[str, Any] = {"queries": {}, "last": max(by_layer)}
    _STATE.capture = cap
    try:
        with torch.inference_mode():
            with contextlib.suppress(_Stop):  # stops after the last layer with alignment heads
                decoder(input_ids=tokens, encoder_hidden_states=encoder_states, use_cache=False)
            out: list[Any] = []
            empty = encoder_states.new_zeros((batch, 0, steps, frames), dtype=torch.float32)
            for i, a in enumerate(attns):
                if i not in by_layer:
                    out.append(empty)
                    continue
                idx = by_layer[i]
                q = cap["queries"][i] * a.scaling  # as WhisperAttention scales before the product
                q = q.view(batch, steps, a.num_heads, a.head_dim)[:, :, idx].transpose(1, 2)
                w = a.k_proj.weight.view(a.num_heads, a.head_dim, -1)[idx].reshape(len(idx) * a.head_dim, -1)
                b = a.k_proj.bias
                if b is not None:
                    b = b.view(a.num_heads, a.head_dim)[idx].reshape(-1)
                k = torch.nn.functional.linear(encoder_states, w, b)
                k = k.view(batch, frames, len(idx), a.head_dim).transpose(1, 2)
                out.append(torch.matmul(q, k.transpose(-1, -2)).float().softmax(dim=-1))
    finally:
        _STATE.capture = None
    return tuple(out), heads
