"""Token times from Whisper's cross-attention: an alignment forward pass beside vLLM, then DTW (word timestamps).

vLLM does not expose attention weights, so the decoded tokens of every window are run once more through the same
checkpoint in torch (Hugging Face's WhisperForConditionalGeneration, eager attention), all windows of a request in
one batch: one encoder pass and one teacher-forced decoder pass, no sampling. The cross-attention of the alignment
heads, normalized and median-filtered as openai/whisper's timing.py does, is the cost matrix of a monotonic
alignment (DTW) between text tokens and the encoder's 20 ms frames.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .words import Word, ordered, window_words

if TYPE_CHECKING:  # imported for real on first use: transformers and torch are heavy
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

log = logging.getLogger(__name__)

FRAME_SECONDS = 0.02  # one encoder position (Whisper's 30 s window is 1500 of them)
SAMPLES_PER_FRAME = 320  # at 16 kHz: two mel hops
MEDIAN_FILTER_WIDTH = 7  # openai/whisper's medfilt_width


def alignment_heads(model_dir: str | Path, layers: int, heads: int) -> tuple[list[tuple[int, int]], str]:
    """(decoder layer, head) pairs whose cross-attention follows the speech, and where they came from.

    openai/whisper publishes them per checkpoint; converted checkpoints carry them in generation_config.json
    (our converter copies CTranslate2's `alignment_heads`; Hugging Face's Whisper repos have them too). Without
    them: every head of the last half of the decoder layers, openai/whisper's own default before a checkpoint's
    heads are set, which is less sharp but still monotonic enough for DTW.
    """
    for name in ("generation_config.json", "config.json"):
        path = Path(model_dir) / name
        if path.is_file():
            pairs = json.loads(path.read_text()).get("alignment_heads")
            if pairs:
                valid = [(int(layer), int(h)) for layer, h in pairs if 0 <= layer < layers and 0 <= h < heads]
                if valid:
                    return valid, f"{name} alignment_heads"
    return [(layer, h) for layer in range(layers // 2, layers) for h in range(heads)], "fallback: last half of layers"


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimal-cost monotonic path through a [tokens, frames] cost matrix: (token index, frame index) per step.

    Steps move one frame, one token, or both. The table is filled one anti-diagonal at a time (every cell of a
    diagonal depends only on the two before it), so a 220 x 1500 matrix costs ~1700 vector steps, not 330k.
    """
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    trace = np.zeros((n + 1, m + 1), dtype=np.int8)  # 0: diagonal, 1: from above (token), 2: from left (frame)
    for k in range(2, n + m + 1):
        i = np.arange(max(1, k - m), min(n, k - 1) + 1)
        j = k - i
        diag, up, left = acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]
        step = np.where((diag <= up) & (diag <= left), 0, np.where(up <= left, 1, 2)).astype(np.int8)
        acc[i, j] = cost[i - 1, j - 1] + np.minimum(diag, np.minimum(up, left))
        trace[i, j] = step
    i, j = n, m
    path = []
    while i > 0 and j > 0:
        path.append((i - 1, j - 1))
        step = trace[i, j]
        if step == 0:
            i, j = i - 1, j - 1
        elif step == 1:
            i -= 1
        else:
            j -= 1
    path.reverse()
    arr = np.array(path, dtype=np.int64).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


def token_boundaries(weights: np.ndarray) -> np.ndarray:
    """Cross-attention of the alignment heads, [heads, rows, frames] (rows: the step predicting each text token,
    then the one predicting <|endoftext|>), -> the time in seconds where each row starts (rows + 1 values: the
    last is where the final row starts, i.e. the end of the last text token)."""
    from scipy.ndimage import median_filter

    w = weights / np.maximum(weights.sum(axis=-1, keepdims=True), 1e-9)  # renormalize over the audio's frames
    mean, std = w.mean(axis=-2, keepdims=True), w.std(axis=-2, keepdims=True)
    w = (w - mean) / np.maximum(std, 1e-9)
    w = median_filter(w, size=(1, 1, MEDIAN_FILTER_WIDTH), mode="nearest")
    matrix = w.mean(axis=0)
    rows, cols = dtw(-matrix.astype(np.float64))
    jumps = np.concatenate([[True], np.diff(rows) > 0])
    times = cols[jumps] * FRAME_SECONDS
    # rows that DTW never entered cannot happen (every row is visited), but a degenerate matrix must not crash
    if len(times) < matrix.shape[0]:
        times = np.concatenate([times, np.full(matrix.shape[0] - len(times), times[-1] if len(times) else 0.0)])
    return np.append(times, times[-1])[: matrix.shape[0] + 1]


@dataclass(frozen=True)
class AlignmentInput:
    samples: np.ndarray  # one window of audio (at most 30 s), 16 kHz
    prefix: list[int]  # <|startoftranscript|> [<|lang|> <|task|>] <|notimestamps|>
    text_tokens: list[int]  # the window's decoded text tokens, without timestamps
    eot: int


class Aligner:
    """The alignment model, loaded on first use (a request that asks for words), one pass at a time."""

    def __init__(self, model_id: str, device: str | None = None):
        self.model_id, self.device = model_id, device
        self._model: WhisperForConditionalGeneration | None = None
        self._features: WhisperFeatureExtractor | None = None
        self.heads: list[tuple[int, int]] = []
        self.heads_source = ""
        self._lock = threading.Lock()

    def _load(self) -> None:
        import torch
        from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

        if self.device is None:  # beside vLLM on its GPU when there is one
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        model = WhisperForConditionalGeneration.from_pretrained(self.model_id, attn_implementation="eager", dtype=dtype)
        # transformers types `to` through functools.wraps, which loses the binding of self
        self._model = model.to(self.device).eval()  # type: ignore[arg-type]
        cfg = model.config
        self._features = WhisperFeatureExtractor(feature_size=cfg.num_mel_bins)
        self.heads, self.heads_source = alignment_heads(self.model_id, cfg.decoder_layers, cfg.decoder_attention_heads)
        log.info("word alignment model loaded on %s; heads: %s (%d)", self.device, self.heads_source, len(self.heads))

    def align(self, inputs: list[AlignmentInput]) -> list[np.ndarray]:
        """Per input: len(text_tokens) + 1 boundary times in seconds from the window's start (token k spans
        [b[k], b[k+1]])."""
        import torch

        with self._lock:
            if self._model is None:
                self._load()
            model, fe = self._model, self._features
            assert model is not None and fe is not None
            mel = fe([x.samples for x in inputs], sampling_rate=16000, return_tensors="pt").input_features
            seqs = [[*x.prefix, *x.text_tokens, x.eot] for x in inputs]
            width = max(len(s) for s in seqs)
            ids = torch.tensor([s + [s[-1]] * (width - len(s)) for s in seqs])  # right padding: causal, harmless
            dtype = next(model.parameters()).dtype
            # Only the alignment heads' cross-attention is kept, taken by hooks as each layer runs: asking the model
            # for output_attentions would hold every layer's [batch, heads, tokens, 1500] weights at once (GBs for
            # large-v3). The decoder runs without the LM head: no logits are needed.
            layers = sorted({layer for layer, _ in self.heads})
            captured: dict[int, torch.Tensor] = {}
            decoder = model.model.decoder
            hooks = [
                decoder.layers[layer].encoder_attn.register_forward_hook(
                    lambda _m, _i, out, layer=layer: captured.__setitem__(
                        layer, out[1][:, [h for ly, h in self.heads if ly == layer]].float()
                    )
                )
                for layer in layers
            ]
            try:
                with torch.inference_mode():
                    audio = model.model.encoder(mel.to(self.device, dtype)).last_hidden_state
                    decoder(input_ids=ids.to(self.device), encoder_hidden_states=audio, use_cache=False)
            finally:
                for hook in hooks:
                    hook.remove()
            picked = torch.cat([captured[layer] for layer in layers], dim=1).cpu().numpy()
        result = []
        for b, x in enumerate(inputs):
            frames = max(1, min(picked.shape[-1], int(np.ceil(len(x.samples) / SAMPLES_PER_FRAME))))
            first = len(x.prefix) - 1  # the step after <|notimestamps|> predicts the first text token
            rows = picked[b, :, first : first + len(x.text_tokens) + 1, :frames]
            result.append(token_boundaries(rows) if len(x.text_tokens) else np.zeros(1))
        return result


MAX_BATCH = 8  # windows per alignment pass: bounds the attention tensors' memory on long uploads


def align_words(
    aligner: Aligner,
    windows: list[tuple[np.ndarray, float, list[int]]],
    prefix: list[int],
    eot: int,
    decode: Callable[[list[int]], str],
    language: str,
    rate: int,
) -> list[Word]:
    """Words of every decoded window (samples, start in the upload, text tokens), timed in the upload's seconds."""
    todo = [w for w in windows if w[2]]
    words: list[Word] = []
    for i in range(0, len(todo), MAX_BATCH):
        batch = todo[i : i + MAX_BATCH]
        bounds = aligner.align([AlignmentInput(samples, prefix, tokens, eot) for samples, _, tokens in batch])
        for (samples, start, tokens), b in zip(batch, bounds, strict=True):
            words += window_words(tokens, b, decode, language, samples, rate, start)
    return ordered(words)
