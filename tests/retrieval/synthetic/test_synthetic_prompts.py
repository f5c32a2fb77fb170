"""The prompt asks for k queries about the document only; the parser keeps clean, distinct queries."""

import pytest

from kd.retrieval.synthetic.prompts import parse_queries, query_messages, truncate


def test_parse_numbered_list_strips_numbering_labels_and_quotes():
    reply = ('Here are three claims:\n1. "Vitamin D lowers the risk of hip fractures."\n'
             "2) Claim: Statins reduce LDL cholesterol in adults.\n- **Query 3:** aspirin use and colon cancer risk?")
    assert parse_queries(reply, 3) == ["Vitamin D lowers the risk of hip fractures.",
                                       "Statins reduce LDL cholesterol in adults.",
                                       "aspirin use and colon cancer risk?"]


def test_parse_drops_duplicates_too_short_and_a_last_line_cut_off_by_the_token_limit():
    reply = ("1. Smoking increases lung cancer risk.\n2. smoking increases lung-cancer risk\n3. Yes.\n"
             "4. Exercise improves insulin sensitivity in older adults.\n5. Coffee consumption is associated with")
    assert parse_queries(reply, 5) == ["Smoking increases lung cancer risk.",
                                       "Exercise improves insulin sensitivity in older adults."]
    assert parse_queries(reply, 1) == ["Smoking increases lung cancer risk."]


@pytest.mark.parametrize("reply", ["", "I don't know.", "Sure!", "x" * 400, "1.\n2.\n3."])
def test_reply_with_no_query_gives_an_empty_list(reply):
    assert parse_queries(reply, 3) == []


def test_prompt_holds_the_truncated_document_and_k_and_nothing_else():
    document = "zebra " * 1000
    messages = query_messages(document, 4, "query", max_chars=50)
    user = messages[-1]["content"]
    assert "Write 4 different short search queries" in user
    assert user.count("zebra") == len(truncate(document, 50).split()) == 8  # 8 x "zebra " = 48 characters
    assert [m["role"] for m in messages] == ["system", "user"]
    with pytest.raises(ValueError, match="prompt style"):
        query_messages("x", 1, "poem")


def test_a_line_that_runs_on_is_cut_to_its_first_sentence():
    reply = ("1. Mutated KRAS results in overexpression of DUSP4 in rectal carcinomas. Mutations of the KRAS oncogene "
             "are predictive for resistance to treatment with antibodies against the epithelial growth factor "
             "receptor in patients with colorectal cancer. Overcoming this therapeutic dilemma could\n"
             "2. Vitamin C (e.g. 500 mg) reduces cold duration.")
    assert parse_queries(reply, 3) == ["Mutated KRAS results in overexpression of DUSP4 in rectal carcinomas.",
                                       "Vitamin C (e.g. 500 mg) reduces cold duration."]


def test_verbatim_share_tells_a_copied_sentence_from_a_paraphrase():
    from kd.retrieval.synthetic.prompts import verbatim_share

    doc = "Centrosomes are microtubule-organizing centres of animal cells. They influence cell shape."
    assert verbatim_share("Centrosomes are microtubule-organizing centres of animal cells.", doc) == 1.0
    assert verbatim_share("Animal cells organise microtubules from centrosomes", doc) == pytest.approx(2 / 6)
    assert verbatim_share("", doc) == 0.0


def test_the_paraphrase_style_asks_for_own_words():
    from kd.retrieval.synthetic.prompts import query_messages

    user = query_messages("Some abstract text.", 2, "paraphrase")[-1]["content"]
    assert "own words" in user and "Write 2 different" in user
