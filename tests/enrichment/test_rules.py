"""The embedded enricher names the hand, the object and the place the label leaves out."""

from __future__ import annotations

from egoframe.data.records import ActionRecord, Box, save_records
from egoframe.enrichment import attach_descriptions, describe, enrich_dataset, load_descriptions
from egoframe.enrichment.rules import third_person

W, H = 640, 480
LEFT_HAND = Box("left_hand", 20, 300, 180, 470, role="left_hand")
RIGHT_HAND = Box("right_hand", 460, 300, 620, 470, role="right_hand")


def rec(action: str, boxes: list[Box], source: str = "world", **kw) -> ActionRecord:
    verb, noun = action.split(" ", 1)
    return ActionRecord(id=kw.pop("id", "x"), source=source, action=action, verb=verb, noun=noun, width=W,
                        height=H, boxes=boxes, **kw)


def test_take_names_hand_object_and_place():
    # three cups in view; the green one on the right is taken, the right hand overlaps it
    boxes = [LEFT_HAND, RIGHT_HAND,
             Box("red cup", 40, 200, 100, 260), Box("blue cup", 300, 200, 360, 260),
             Box("green cup", 500, 250, 560, 320, role="object_of_change")]
    assert describe(rec("take cup", boxes)) == \
        "the person takes the green cup on the right of the counter with the right hand."


def test_left_hand_and_left_place():
    boxes = [LEFT_HAND, RIGHT_HAND, Box("red cup", 60, 180, 120, 240, role="object_of_change"),
             Box("blue cup", 520, 200, 580, 260)]
    # no hand overlaps the cup: the nearer one (left) is chosen
    assert describe(rec("take cup", boxes)) == \
        "the person takes the red cup on the left of the counter with the left hand."


def test_centre_and_contact_frame_decides_the_hand():
    cup_in = Box("yellow cup", 290, 100, 350, 160, role="object_of_change", frame="input")
    cup_pnr = Box("yellow cup", 290, 100, 350, 160, role="object_of_change", frame="pnr")
    # on the input frame the left hand is nearer; at the point of no return the right hand grips the cup
    boxes = [cup_in, cup_pnr,
             Box("left_hand", 200, 150, 280, 260, role="left_hand", frame="input"),
             Box("right_hand", 500, 300, 620, 470, role="right_hand", frame="input"),
             Box("left_hand", 20, 300, 150, 470, role="left_hand", frame="pnr"),
             Box("right_hand", 320, 120, 420, 240, role="right_hand", frame="pnr")]
    assert describe(rec("take cup", boxes)) == \
        "the person takes the yellow cup in the centre of the counter with the right hand."


def test_put_names_the_destination_and_its_place():
    boxes = [LEFT_HAND, RIGHT_HAND, Box("blue cup", 60, 280, 120, 340, role="object_of_change"),
             Box("white plate", 480, 200, 600, 260, role="destination")]
    assert describe(rec("put cup", boxes)) == \
        "the person puts the blue cup from the left hand onto the white plate on the right of the counter."
    boxes[-1] = Box("green bowl", 480, 200, 600, 260, role="destination")
    assert "into the green bowl" in describe(rec("put cup", boxes))


def test_pour_into_destination():
    boxes = [LEFT_HAND, RIGHT_HAND, Box("water jug", 470, 250, 540, 340, role="object_of_change"),
             Box("glass", 280, 200, 330, 260, role="destination")]
    assert describe(rec("pour jug", boxes)) == \
        "the person pours the water jug from the right hand into the glass in the centre of the counter."


def test_cut_says_which_hand_holds_the_tool():
    boxes = [LEFT_HAND, RIGHT_HAND, Box("tomato", 150, 250, 220, 320, role="object_of_change"),
             Box("knife", 400, 280, 520, 320, role="tool"),
             Box("cutting board", 100, 220, 560, 400)]
    assert describe(rec("cut tomato", boxes)) == \
        "the person holds the knife in the right hand and cuts the tomato on the left of the cutting board."


def test_other_sources_do_not_invent_a_counter():
    boxes = [LEFT_HAND, RIGHT_HAND, Box("drawer", 500, 300, 630, 420, role="object_of_change")]
    assert describe(rec("open drawer", boxes, source="epic100")) == \
        "the person opens the drawer on the right with the right hand."


def test_surface_option_and_counter_destination():
    from egoframe.enrichment import RuleConfig

    boxes = [LEFT_HAND, RIGHT_HAND, Box("red cup", 60, 280, 120, 340, role="object_of_change"),
             Box("counter", 400, 150, 640, 300, role="destination")]
    cfg = RuleConfig(surface="counter")
    assert describe(rec("put cup", boxes, source="ego4d"), cfg) == \
        "the person puts the red cup from the left hand onto the counter on the right."
    take = rec("take cup", boxes[:3], source="ego4d")
    assert describe(take, cfg).endswith("on the left of the counter with the left hand.")


def test_ego4d_layout_destination_inferred_from_pnr_contact():
    # Ego4D has no destination role: the other box the object meets at PNR is where it goes
    boxes = [Box("left_hand", 20, 300, 180, 470, role="left_hand", frame="pnr"),
             Box("right_hand", 400, 220, 560, 400, role="right_hand", frame="pnr"),
             Box("tomato", 300, 260, 340, 300, role="object_of_change", frame="input"),
             Box("tomato", 480, 200, 520, 240, role="object_of_change", frame="pnr"),
             Box("purple bowl", 60, 200, 160, 260, role="other", frame="pnr"),
             Box("green bowl", 460, 180, 560, 250, role="other", frame="pnr")]
    assert describe(rec("put tomato", boxes, source="ego4d")) == \
        "the person puts the tomato from the right hand into the green bowl on the right."


def test_deterministic_and_blind_to_frames():
    boxes = [LEFT_HAND, RIGHT_HAND, Box("red cup", 500, 250, 560, 320, role="object_of_change")]
    a = describe(rec("take cup", boxes, input_path="a.png", target_path="b.png"))
    b = describe(rec("take cup", list(boxes), input_path="other.png", target_path="missing.png"))
    assert a == b


def test_third_person():
    assert [third_person(v) for v in ("take", "wash", "empty", "pick-up", "turn on", "go", "play")] == \
        ["takes", "washes", "empties", "picks up", "turns on", "goes", "plays"]


def test_dataset_run_writes_and_attaches(tmp_path):
    good = rec("take cup", [LEFT_HAND, RIGHT_HAND, Box("red cup", 500, 250, 560, 320, role="object_of_change")],
               id="a")
    bad = ActionRecord(id="b", source="world", action="", width=W, height=H)
    save_records([good, bad], str(tmp_path / "pairs.parquet"))
    summary = enrich_dataset(str(tmp_path))
    assert (summary.done, summary.failed) == (1, 1)
    rows = {r["id"]: r for r in load_descriptions(str(tmp_path))}
    assert rows["a"]["backend"] == "rules" and rows["a"]["status"] == "done"
    assert rows["b"]["status"] == "failed" and rows["b"]["error"] == "record has no action label"
    fresh = [rec("take cup", [], id="a"), rec("take cup", [], id="b")]
    assert attach_descriptions(fresh, str(tmp_path)) == 1
    assert fresh[0].description == describe(good) and fresh[1].description == ""
