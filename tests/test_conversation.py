import json

import pytest

from music_rm.data.conversation import SchemaError, from_hh, pair_id, prompt_of, render, validate_pair


def msg(role, content):
    return {"role": role, "content": content}


GOOD = {"chosen": [msg("user", "Hi?"), msg("assistant", "Hello!")],
        "rejected": [msg("user", "Hi?"), msg("assistant", "Go away.")]}


@pytest.mark.parametrize("row, field, fragment", [
    ({"chosen": GOOD["chosen"]}, "rejected", "missing"),
    ({**GOOD, "chosen": "Hi"}, "chosen", "expected a list"),
    ({**GOOD, "chosen": []}, "chosen", "empty conversation"),
    ({**GOOD, "chosen": [msg("user", "Hi?"), msg("bot", "x")]}, "chosen[1].role", "unknown role 'bot'"),
    ({**GOOD, "chosen": [msg("user", "Hi?"), msg("assistant", "  ")]}, "chosen[1].content", "empty content"),
    ({**GOOD, "chosen": [msg("user", "Hi?"), {"role": "assistant", "content": 3}]}, "chosen[1].content",
     "expected a string"),
    ({**GOOD, "chosen": [msg("user", "Hi?"), {"role": "assistant"}]}, "chosen[1]", "missing key"),
    ({**GOOD, "chosen": [msg("user", "Hi?"), {**msg("assistant", "x"), "name": "a"}]}, "chosen[1]", "unexpected key"),
    ({**GOOD, "chosen": [msg("user", "a"), msg("user", "b"), msg("assistant", "c")]}, "chosen[1].role",
     "must alternate"),
    ({**GOOD, "chosen": [msg("user", "a"), msg("system", "b"), msg("assistant", "c")]}, "chosen[1].role",
     "system message"),
    ({**GOOD, "chosen": [msg("user", "Hi?")]}, "chosen[0].role", "end with an assistant"),
    ({**GOOD, "rejected": [msg("user", "Other?"), msg("assistant", "x")]}, "rejected", "different prompts"),
    ({**GOOD, "rejected": GOOD["chosen"]}, "rejected", "identical to chosen"),
])
def test_validate_pair_names_the_field(row, field, fragment):
    with pytest.raises(SchemaError) as e:
        validate_pair(row)
    assert e.value.field == field
    assert fragment in e.value.reason


def test_valid_pair_with_system_and_history_passes():
    history = [msg("system", "Be brief."), msg("user", "a"), msg("assistant", "b"), msg("user", "c")]
    validate_pair({"chosen": history + [msg("assistant", "good")], "rejected": history + [msg("assistant", "bad")]})
    assert prompt_of(history + [msg("assistant", "good")]) == history


def test_pair_id_is_stable_and_content_addressed():
    assert pair_id(GOOD["chosen"], GOOD["rejected"]) == pair_id(list(GOOD["chosen"]), list(GOOD["rejected"]))
    assert pair_id(GOOD["chosen"], GOOD["rejected"]) != pair_id(GOOD["rejected"], GOOD["chosen"])


def test_from_hh_parses_turns():
    text = "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: Tell me a joke.\n\nAssistant: No."
    assert from_hh(text, "chosen") == [msg("user", "Hi there"), msg("assistant", "Hello!"),
                                       msg("user", "Tell me a joke."), msg("assistant", "No.")]
    with pytest.raises(SchemaError, match="before the first"):
        from_hh("preamble\n\nHuman: x\n\nAssistant: y", "chosen")


def test_render_clips_from_the_left_and_skips_system():
    text = render([msg("system", "s"), msg("user", "abcdefgh"), msg("assistant", "ok")], max_chars=3)
    assert text == "User: …fgh\nAssistant: ok"


def test_read_pairs_accepts_multi_turn_contrast_and_names_a_bad_row(tmp_path):
    from music_rm.data.conversation import read_pairs
    from music_rm.core.errors import InputError

    opening = [msg("user", "Plan a trip.")]
    music = {"chosen": opening + [msg("assistant", "Where to?"), msg("user", "Rome."), msg("assistant", "Great.")],
             "rejected": opening + [msg("assistant", "Here is a budget."), msg("user", "Cheaper?"),
                                    msg("assistant", "Sure.")]}
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(music) + "\n\n" + json.dumps({**music, "rejected": music["chosen"]}) + "\n")
    with pytest.raises(InputError) as e:
        read_pairs(path)
    assert (e.value.row, e.value.field, e.value.reason) == (3, "rejected", "identical to chosen (whitespace aside)")
    path.write_text(json.dumps(music) + "\n")
    assert read_pairs(path) == [music]
