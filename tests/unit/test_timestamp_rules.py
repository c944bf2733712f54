"""openai/whisper's timestamp rules on single logits rows (engine/timestamp_rules.py), and where a decode stopped."""

import pytest
import torch

from helpers import VOCAB_MULTILINGUAL
from whisper_inference.engine.segments import decoded_until
from whisper_inference.engine.timestamp_rules import apply_timestamp_rules

pytestmark = pytest.mark.unit
V = VOCAB_MULTILINGUAL  # the real ids of base
TS, EOT, N = V.timestamp_begin, V.eot, V.timestamp_begin + 1501


def ts(seconds: float) -> int:
    return TS + int(round(seconds / 0.02))


def row(**boost: float) -> torch.Tensor:
    """Flat logits with a few tokens raised: row(t100=5.0) raises token 100."""
    logits = torch.zeros(N)
    for name, value in boost.items():
        logits[int(name[1:])] = value
    return logits


def winner(seq, logits) -> int:
    return int(torch.argmax(apply_timestamp_rules(seq, logits, TS, EOT)))


def test_window_opening_timestamp_must_be_followed_by_text():
    out = apply_timestamp_rules([ts(0)], row(**{f"t{ts(1)}": 9.0, "t100": 1.0}), TS, EOT)
    assert torch.isinf(out[TS:]).all() and int(torch.argmax(out)) == 100


def test_after_a_segments_text_only_a_timestamp_or_the_end():
    seq = [ts(0), 100, 101]
    out = apply_timestamp_rules(seq + [ts(2.0)], row(t102=9.0, **{f"t{EOT}": 12.0}), TS, EOT)
    assert torch.isinf(out[:EOT]).all() and not torch.isinf(out[EOT]) and not torch.isinf(out[ts(2.0)])


def test_timestamps_never_go_back():
    seq = [ts(0), 100, ts(4.0), ts(4.0), 101]
    out = apply_timestamp_rules(seq, row(), TS, EOT)
    assert torch.isinf(out[TS : ts(4.0) + 1]).all() and not torch.isinf(out[ts(4.02)])
    # a closing timestamp may repeat the segment's last one
    closing = apply_timestamp_rules([ts(0), 100, ts(4.0)], row(), TS, EOT)
    assert not torch.isinf(closing[ts(4.0)]) and torch.isinf(closing[ts(3.98)])


def test_timestamps_that_together_outweigh_the_end_token_win():
    """The bug this fixes: after `text <|11.00|>` the single likeliest token was <|endoftext|>, the window
    ended and the next sentences were dropped; all timestamps together were likelier."""
    seq = [ts(0), 100, 101, ts(11.0)]
    logits = row(**{f"t{EOT}": 4.0})
    logits[ts(11.5) : ts(12.5)] = 1.5  # 50 timestamps, each less likely than the end
    assert int(torch.argmax(logits)) == EOT
    assert ts(11.5) <= winner(seq, logits) < ts(12.5)


def test_the_end_stays_when_it_is_likelier_than_every_timestamp_together():
    seq = [ts(0), 100, 101, ts(11.0)]
    assert winner(seq, row(**{f"t{EOT}": 12.0})) == EOT


def test_plain_text_is_untouched_mid_segment():
    seq = [ts(0), 100, 101]
    logits = row(t102=9.0)  # likelier than all 1,501 flat timestamps together (e^9 > 1501)
    assert torch.equal(apply_timestamp_rules(seq, logits, TS, EOT)[:TS], logits[:TS])


@pytest.mark.parametrize(
    "tokens, until",
    [
        ([100, 101, ts(11.0), EOT], 11.0),  # closed its last segment, then ended: 11 s heard
        ([100, ts(5.0), ts(5.0), 102, ts(9.5), EOT], 9.5),
        ([100, 101, EOT], None),  # last segment open: it covers the window
        ([100, 101, ts(3.0)], None),  # token budget hit, no end token
        ([EOT], None),
    ],
)
def test_decoded_until(tokens, until):
    assert decoded_until(V, tokens) == until


def test_batch_masks_only_its_rows_each_by_its_own_sequence():
    from whisper_inference.engine.timestamp_rules import apply_timestamp_rules_batch

    logits = torch.zeros(4, N)
    logits[:, 100] = 9.0
    logits[:, EOT] = 12.0
    untouched = logits[1].clone()
    out = apply_timestamp_rules_batch(logits, [0, 2, 3], [[ts(0)], [ts(0), 100, ts(2.0)], [ts(0), 100]], TS, EOT)
    assert torch.isinf(out[0, TS:]).all() and not torch.isinf(out[0, :TS]).any()  # text after the opening
    assert torch.isinf(out[2, :EOT]).all() and not torch.isinf(out[2, EOT])  # close or end
    assert torch.isinf(out[3]).nonzero().flatten().tolist() == [TS]  # mid-segment: only <|0.00|>
    assert torch.equal(out[1], untouched)  # not a timed request
