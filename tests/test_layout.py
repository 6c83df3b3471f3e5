"""The serial-number layout: exact SN numbering, time order, and where the loss goes."""
import pytest
import torch

from flashvideo.config import FlashVideoConfig
from flashvideo.layout import INTERP, KEY, UNKNOWN, Layout

CONFIG = FlashVideoConfig(grid=2, n_codes=10, n_text=6, text_len=3, max_key_frames=5, max_interp_frames=4,
                          d_model=16, n_heads=2)
L = Layout(CONFIG)


def sns_of(seq):
    """SN numbers in order of appearance, read back from the token ids."""
    c = CONFIG
    return [int(t) - c.sn_offset + 1 for t in seq if c.sn_offset <= t < c.task_offset]


def test_sizes_come_from_config():
    assert L.header_len == 1 + CONFIG.text_len + 1
    assert L.frame_len == L.header_len + CONFIG.grid ** 2
    assert CONFIG.n_sn == max(CONFIG.max_key_frames, CONFIG.max_interp_frames + 2) == 6


def test_key_frame_sequence_K4():
    text = L.text_block([2, 5])
    frames = torch.arange(16).view(4, 2, 2) % CONFIG.n_codes
    seq = L.key_sequence(text, frames)
    assert len(seq) == 4 * L.frame_len
    assert sns_of(seq) == [1, 2, 3, 4]
    for k in range(4):
        slot = seq[k * L.frame_len:(k + 1) * L.frame_len]
        assert slot[0] == CONFIG.task_offset + KEY
        assert slot[1:4].tolist() == [CONFIG.text_offset + 2, CONFIG.text_offset + 5, CONFIG.text_offset]  # padded
        assert torch.equal(seq[L.code_positions(k)], frames[k].flatten())


def test_interp_sequence_n3_sn_numbers_and_time_order():
    text = L.text_block([1])
    a, b = torch.zeros(2, 2, dtype=torch.long), torch.ones(2, 2, dtype=torch.long)
    middle = torch.full((3, 2, 2), UNKNOWN)
    seq = L.interp_sequence(text, a, b, middle)
    assert len(seq) == 5 * L.frame_len
    # A gets SN 1, B gets SN n+2 = 5, the in-between frames SN 2, 3, 4
    assert sns_of(seq) == [1, 5, 2, 3, 4]
    assert all(seq[s * L.frame_len] == CONFIG.task_offset + INTERP for s in range(5))
    assert (seq[L.code_positions(2)] == UNKNOWN).all()


def test_interp_count_token_names_n_in_every_header_of_an_interpolation():
    import dataclasses

    counted = Layout(dataclasses.replace(CONFIG, interp_count_token=True))
    c = counted.config
    assert c.vocab_size == CONFIG.vocab_size + CONFIG.max_interp_frames - 1
    text, a = counted.text_block([1]), torch.zeros(2, 2, dtype=torch.long)
    tasks = {}
    for n in range(1, CONFIG.max_interp_frames + 1):
        seq = counted.interp_sequence(text, a, a, torch.full((n, 2, 2), UNKNOWN))
        heads = {int(seq[s * counted.frame_len]) for s in range(n + 2)}
        assert len(heads) == 1 and sns_of(seq) == [1, n + 2] + list(range(2, n + 2))   # the paper's SNs unchanged
        tasks[n] = heads.pop()
    assert sorted(tasks.values()) == list(range(c.task_offset + INTERP, c.vocab_size))  # one token per n
    assert counted.key_sequence(text, a[None])[0] == c.task_offset + KEY
    assert L.interp_task(3) == L.interp_task(1) == INTERP                                # off: one INTERP token
    with pytest.raises(ValueError, match="interp_count_token must be true or false"):
        dataclasses.replace(CONFIG, interp_count_token="yes")


def test_targets_cover_only_generated_codes():
    text = L.text_block([1, 2, 3])
    frames = torch.randint(0, CONFIG.n_codes, (3, 2, 2))
    seq = L.key_sequence(text, frames)
    tgt = L.targets(seq, generated_slots=[1, 2])  # first frame given (prediction)
    covered = (tgt != -100).nonzero().flatten() + 1  # positions whose token is predicted
    expected = torch.cat([torch.arange(L.code_positions(s).start, L.code_positions(s).stop) for s in (1, 2)])
    assert torch.equal(covered, expected)
    assert torch.equal(tgt[covered - 1], seq[covered])


@pytest.mark.parametrize("bad", [[], [1, 2, 3, 4], [0], [6]])
def test_text_block_rejects(bad):
    with pytest.raises(ValueError):
        L.text_block(bad)


def test_limits():
    with pytest.raises(ValueError, match="interp_frames"):
        L.interp_sns(CONFIG.max_interp_frames + 1)
    with pytest.raises(ValueError, match="key_frames"):
        L.key_sns(CONFIG.max_key_frames + 1)
