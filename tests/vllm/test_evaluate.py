import pytest

from egoframe.vllm.evaluate import hand_of, object_of, score_descriptions

NAMES = ["red cup", "blue cup", "green cup", "knife", "tomato", "cutting board"]


def test_parsing():
    assert hand_of("the person takes the red cup with the Left hand.") == "left"
    assert hand_of("the person takes the cup.") is None
    assert object_of("the person holds the knife in the right hand and cuts the tomato", NAMES) == "knife"
    assert object_of("the person takes the blue cup on the left of the counter", NAMES) == "blue cup"
    assert object_of("the person takes the cup", NAMES) is None


def test_scores_and_chance():
    truth = ["the person takes the red cup with the left hand.", "the person takes the blue cup with the right hand.",
             "the person takes the blue cup with the right hand.", "the person takes the knife with the left hand."]
    pred = ["the person takes the red cup with the left hand.", "the person takes the red cup with the right hand.",
            "the person takes the blue cup with the left hand.", "the person takes the knife."]
    s = score_descriptions(pred, truth, ["cup", "cup", "cup", "knife"], NAMES)
    assert (s.hand_correct, s.hand_n, s.object_correct, s.object_n) == (2, 4, 3, 4)
    assert s.hand_chance_uniform == 0.5 and s.hand_chance_majority == 0.5
    assert s.object_chance_uniform == pytest.approx((1 / 3 * 3 + 1) / 4)
    assert s.object_chance_majority == pytest.approx((2 + 1) / 4)  # "blue cup" for cups, "knife" for knives
