import pytest

from egoframe.errors import ConfigError
from egoframe.vllm.templates import QUESTION_TEMPLATES, prompt_for, question_for


def test_ten_distinct_templates_each_naming_the_action():
    assert len(QUESTION_TEMPLATES) == 10
    assert len(set(QUESTION_TEMPLATES)) == 10
    for t in range(10):
        assert "cut tomato" in question_for("cut  tomato", t)


def test_prompt_is_llava_1_5_format():
    assert prompt_for("take cup", 1) == "USER: <image>\nDescribe in detail how the person will take cup here. ASSISTANT:"


def test_bad_template_number():
    with pytest.raises(ConfigError):
        question_for("take cup", 10)
