from egoframe.enrichment.validate import check_answer, clean_answer, head_noun

from .conftest import kitchen_record


def test_one_sentence_naming_the_noun_passes():
    rec = kitchen_record(0)
    assert check_answer("The person takes the red cup with the right hand.", rec) is None
    assert check_answer("The person takes two cups, e.g. the red one, with the right hand.", rec) is None


def test_rejections_say_why():
    rec = kitchen_record(0)
    assert check_answer("   ", rec) == "empty answer"
    assert check_answer("The person takes the cup. Then leaves.", rec) == "more than one sentence"
    assert check_answer("The person takes the cup\nwith the hand", rec) == "more than one sentence"
    assert check_answer("The person takes the mug.", rec) == "does not mention the noun 'cup'"
    assert check_answer("The person takes the cupboard.", rec) == "does not mention the noun 'cup'"


def test_noun_forms():
    rec = kitchen_record(0, verb="take", noun="knife")
    assert check_answer("The person takes both knives.", rec) is None
    rec = kitchen_record(0, verb="open", noun="pan:frying")
    assert head_noun(rec) == "pan"
    rec = kitchen_record(0, verb="cut", noun="cutting_board")
    assert head_noun(rec) == "board"


def test_clean_answer_strips_wrappers():
    assert clean_answer(' Description: "The person takes the cup." ') == "The person takes the cup."
    assert clean_answer("\u201cThe person takes the cup.\u201d") == "The person takes the cup."
