"""Convert a faster-whisper (CTranslate2) checkpoint into a Hugging Face Whisper directory vLLM loads.

Facts this encodes (each learned the hard way):
- self-attention `linear_0` is q, k, v fused; cross-attention `linear_0` is q and `linear_1` is k, v fused;
  Whisper's k projection has no bias (CTranslate2 stores zeros), so HF has none.
- `proj_out` is tied to the decoder token embeddings.
- faster-whisper's tokenizer.json lacks the 1,501 timestamp tokens <|0.00|>..<|30.00|>; without them,
  timestamped decoding produces garbage text.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

from .ct2_reader import read_ct2

# Special token ids differ between multilingual (vocab 51865+) and English-only (51864) checkpoints.
MULTILINGUAL_IDS = {"sot": 50258, "eot": 50257, "notimestamps": 50363}
ENGLISH_IDS = {"sot": 50257, "eot": 50256, "notimestamps": 50362}


def _layer_count(variables: dict[str, np.ndarray], side: str) -> int:
    return len({k.split("/")[1] for k in variables if re.match(rf"{side}/layer_\d+/", k)})


def convert(src: str | Path, dst: str | Path) -> Path:
    import torch
    from tokenizers import AddedToken
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    src, dst = Path(src), Path(dst)
    _, _, v = read_ct2(src / "model.bin")
    ct2cfg = json.loads((src / "config.json").read_text())

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a).astype(np.float32))

    vocab, d_model = v["decoder/embeddings/weight"].shape
    enc_layers, dec_layers = _layer_count(v, "encoder"), _layer_count(v, "decoder")
    heads = int(v["encoder/num_heads"]) if "encoder/num_heads" in v else d_model // 64
    ffn = v["encoder/layer_0/ffn/linear_0/weight"].shape[0]
    multilingual = vocab >= 51865
    ids = MULTILINGUAL_IDS if multilingual else ENGLISH_IDS
    cfg = WhisperConfig(
        vocab_size=vocab,
        num_mel_bins=v["encoder/conv1/weight"].shape[1],
        d_model=d_model,
        encoder_layers=enc_layers,
        decoder_layers=dec_layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=ffn,
        decoder_ffn_dim=ffn,
        max_source_positions=v["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=v["decoder/position_encodings/encodings"].shape[0],
        pad_token_id=ids["eot"],
        bos_token_id=ids["eot"],
        eos_token_id=ids["eot"],
        decoder_start_token_id=ids["sot"],
        begin_suppress_tokens=ct2cfg["suppress_ids_begin"],
        suppress_tokens=ct2cfg["suppress_ids"],
        tie_word_embeddings=True,
    )
    cfg.architectures = ["WhisperForConditionalGeneration"]

    sd: dict[str, torch.Tensor] = {}

    def norm(hf: str, ct: str) -> None:
        sd[hf + ".weight"], sd[hf + ".bias"] = tensor(v[ct + "/gamma"]), tensor(v[ct + "/beta"])

    def linear(hf: str, ct: str) -> None:
        sd[hf + ".weight"], sd[hf + ".bias"] = tensor(v[ct + "/weight"]), tensor(v[ct + "/bias"])

    def fused(hf: str, ct: str, names: list[str]) -> None:
        for name, w, b in zip(
            names, np.split(v[ct + "/weight"], len(names)), np.split(v[ct + "/bias"], len(names)), strict=True
        ):
            sd[f"{hf}.{name}_proj.weight"] = tensor(w)
            if name == "k":
                if np.abs(b.astype(np.float32)).max() != 0:
                    raise ValueError(f"{ct}: non-zero k bias, not a Whisper checkpoint")
            else:
                sd[f"{hf}.{name}_proj.bias"] = tensor(b)

    for side, n in (("encoder", enc_layers), ("decoder", dec_layers)):
        H = f"model.{side}"
        sd[f"{H}.embed_positions.weight"] = tensor(v[f"{side}/position_encodings/encodings"])
        norm(f"{H}.layer_norm", f"{side}/layer_norm")
        for i in range(n):
            h, c = f"{H}.layers.{i}", f"{side}/layer_{i}"
            fused(f"{h}.self_attn", f"{c}/self_attention/linear_0", ["q", "k", "v"])
            linear(f"{h}.self_attn.out_proj", f"{c}/self_attention/linear_1")
            norm(f"{h}.self_attn_layer_norm", f"{c}/self_attention/layer_norm")
            if side == "decoder":
                fused(f"{h}.encoder_attn", f"{c}/attention/linear_0", ["q"])
                fused(f"{h}.encoder_attn", f"{c}/attention/linear_1", ["k", "v"])
                linear(f"{h}.encoder_attn.out_proj", f"{c}/attention/linear_2")
                norm(f"{h}.encoder_attn_layer_norm", f"{c}/attention/layer_norm")
            linear(f"{h}.fc1", f"{c}/ffn/linear_0")
            linear(f"{h}.fc2", f"{c}/ffn/linear_1")
            norm(f"{h}.final_layer_norm", f"{c}/ffn/layer_norm")
    for conv in ("conv1", "conv2"):
        linear(f"model.encoder.{conv}", f"encoder/{conv}")
    sd["model.decoder.embed_tokens.weight"] = tensor(v["decoder/embeddings/weight"])

    model = WhisperForConditionalGeneration(cfg)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if unexpected or any("proj_out" not in m for m in missing):
        raise ValueError(f"state dict mismatch: missing={missing} unexpected={unexpected}")
    model.tie_weights()

    eot = "<|endoftext|>"
    tok = WhisperTokenizer(  # the fast (Rust) tokenizer: transformers 5 has only that one
        tokenizer_file=str(src / "tokenizer.json"), bos_token=eot, eos_token=eot, unk_token=eot, pad_token=eot
    )
    tok.add_tokens(
        [
            AddedToken("<|%.2f|>" % (i * 0.02), lstrip=False, rstrip=False, normalized=False, special=False)
            for i in range(vocab - len(tok))
        ]
    )
    if len(tok) != vocab or tok.convert_tokens_to_ids("<|0.00|>") != ids["notimestamps"] + 1:
        raise ValueError(f"tokenizer does not line up with the vocabulary ({len(tok)} != {vocab})")

    # multilingual checkpoints also map language and task tokens (GenerationConfig keeps extra keys as attributes)
    lang_task: dict[str, dict[str, int]] = {}
    if multilingual:
        lang_ids: list[int] = ct2cfg["lang_ids"]
        lang_task["lang_to_id"] = dict(zip(tok.convert_ids_to_tokens(lang_ids), lang_ids, strict=True))
        task_ids = {t: tok.convert_tokens_to_ids(f"<|{t}|>") for t in ("transcribe", "translate")}
        lang_task["task_to_id"] = {t: i for t, i in task_ids.items() if isinstance(i, int)}
    gen = GenerationConfig(
        decoder_start_token_id=ids["sot"],
        bos_token_id=ids["eot"],
        eos_token_id=ids["eot"],
        pad_token_id=ids["eot"],
        max_length=cfg.max_target_positions,
        begin_suppress_tokens=ct2cfg["suppress_ids_begin"],
        suppress_tokens=ct2cfg["suppress_ids"],
        no_timestamps_token_id=ids["notimestamps"],
        is_multilingual=multilingual,
        alignment_heads=ct2cfg.get("alignment_heads"),
        return_timestamps=False,
        max_initial_timestamp_index=50,
        **lang_task,
    )
    model.generation_config = gen
    dst.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dst, safe_serialization=True)
    WhisperProcessor(
        feature_extractor=WhisperFeatureExtractor(feature_size=cfg.num_mel_bins), tokenizer=tok
    ).save_pretrained(dst)
    return dst


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m whisper_inference.convert.ct2_to_hf SRC_CT2_DIR DST_HF_DIR")
    print(convert(sys.argv[1], sys.argv[2]))
