import torch

from kd.retrieval.models.bi_encoder import BiEncoder
from kd.retrieval.models.length_groups import group_by_length, pad_ids, padding_tokens

TEXTS = ["a", "a much much longer text than all of the others in this little batch", "medium sized text here",
         "tiny", "another fairly long sentence with quite a few words in it", "short one"]


def test_pad_ids_matches_the_tokenizer_padding(tiny_model_dir):
    encoder = BiEncoder(str(tiny_model_dir), max_length=12)
    expected = encoder.tokenizer(TEXTS, padding=True, truncation=True, max_length=12, return_tensors="pt")
    ours = encoder.tokenize(TEXTS)
    assert set(ours) == set(expected)
    for key in ours:
        assert torch.equal(ours[key], expected[key]), key


def test_length_groups_pad_less_and_restore_the_input_order():
    ids = [[1] * n for n in (3, 10, 4, 9, 2, 10, 5, 3)]
    flat = pad_ids(ids, pad_id=0)
    groups = group_by_length(ids, group_size=2, pad_id=0)
    assert padding_tokens(flat) == 8 * 10 - sum(len(x) for x in ids) == 34
    # sorted lengths 10,10 | 9,5 | 4,3 | 3,2 -> padding 0 + 4 + 1 + 1
    assert groups.padding_tokens() == 6
    assert groups.padded_positions() == 20 + 18 + 8 + 6
    assert groups.order.tolist() == [1, 5, 3, 6, 2, 0, 7, 4]
    rows = torch.tensor([float(len(ids[i])) for i in groups.order.tolist()])
    assert groups.restore(rows).tolist() == [float(len(x)) for x in ids]


def test_slices_of_the_same_width_are_one_group():
    # every text cut at max_length (SciFact at 128 tokens): splitting saves no padding, so one batch
    truncated = group_by_length([[1] * 128] * 16, group_size=4, pad_id=0)
    assert [tuple(g["input_ids"].shape) for g in truncated.groups] == [(16, 128)]
    # widths 10,10 | 10,7 | 7,7 | 3 -> the first slice's width repeats in the second: merged; 7,7 starts a new one
    ids = [[1] * n for n in (10, 10, 10, 7, 7, 7, 3)]
    groups = group_by_length(ids, group_size=2, pad_id=0)
    assert [tuple(g["input_ids"].shape) for g in groups.groups] == [(4, 10), (2, 7), (1, 3)]


def test_grouped_embeddings_equal_padded_ones_and_carry_gradients(tiny_model_dir):
    encoder = BiEncoder(str(tiny_model_dir), max_length=32).eval()
    padded = encoder.embed(encoder.tokenize(TEXTS))
    groups = encoder.tokenize_grouped(TEXTS, group_size=2)
    grouped = encoder.embed(groups)
    assert groups.padding_tokens() < padding_tokens(encoder.tokenize(TEXTS))
    assert torch.allclose(grouped, padded, atol=1e-6)
    grouped.sum().backward()
    assert encoder.model.embeddings.word_embeddings.weight.grad.abs().sum() > 0


def test_pretokenized_texts_give_the_same_ids(tiny_model_dir):
    encoder = BiEncoder(str(tiny_model_dir), max_length=8)
    fresh = encoder.token_ids(TEXTS)
    assert encoder.pretokenize(TEXTS + TEXTS[:2]) == len(TEXTS)
    assert encoder.token_ids(TEXTS) == fresh and max(len(x) for x in fresh) == 8
    encoder.max_length = 32  # remembered ids are per max length
    assert max(len(x) for x in encoder.token_ids(TEXTS)) > 8


def test_encode_is_independent_of_length_sorting(tiny_model_dir):
    encoder = BiEncoder(str(tiny_model_dir), max_length=32)
    sorted_batches = encoder.encode(TEXTS, batch_size=4)
    encoder.eval()
    with torch.no_grad():
        one_by_one = torch.cat([encoder.embed(encoder.tokenize([t])) for t in TEXTS])
    assert torch.allclose(sorted_batches, one_by_one, atol=1e-6)
