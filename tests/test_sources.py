import gzip
import json

import pytest

from music_rm.data.conversation import prompt_hash
from music_rm.core.errors import InputError
from music_rm.core.params import FetchParams
from music_rm.data.sources import fetch


def params(**overrides):
    base = dict(source="embedded", path="", format="auto", hf_dataset="", hf_revision="main", hf_split="train",
                limit=None, test_fraction=0.3, reserve_fraction=0.0, on_invalid="fail", max_message_chars=50_000)
    return FetchParams(**{**base, **overrides})


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_embedded_seed_set_is_large_varied_and_split_by_prompt():
    train, test, summary = fetch(params())
    assert summary["rows_kept"] >= 60 and summary["skipped"] == 0
    assert summary["multi_turn"] * 3 >= summary["rows_kept"]
    assert train and test and len(train) + len(test) == summary["rows_kept"]
    assert not {prompt_hash(r["chosen"]) for r in train} & {prompt_hash(r["chosen"]) for r in test}
    assert all(r["source"] == "embedded" and len(r["id"]) == 16 for r in train + test)


def test_split_depends_only_on_the_prompt(tmp_path):
    rows = [{"chosen": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "good"}],
             "rejected": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": a}]}
            for i in range(40) for a in ("bad", "worse")]
    train, test, _ = fetch(params(source="path", path=str(write_jsonl(tmp_path / "p.jsonl", rows))))
    for split in (train, test):
        prompts = [r["chosen"][0]["content"] for r in split]
        assert all(prompts.count(p) == 2 for p in prompts)


def test_hh_strings_from_the_real_hh_rlhf_test_split(shared, tmp_path):
    with gzip.open(shared / "hh_rlhf" / "helpful-base" / "test.jsonl.gz", "rt", encoding="utf-8") as f:
        raw = [json.loads(next(f)) for _ in range(30)]
    path = write_jsonl(tmp_path / "hh.jsonl", raw)
    train, test, summary = fetch(params(source="path", path=str(path), on_invalid="skip"))
    assert summary["rows_read"] == 30 and summary["rows_kept"] + summary["skipped"] == 30
    row = (train + test)[0]
    assert row["chosen"][0]["role"] == "user" and row["chosen"][-1]["role"] == "assistant"


def test_json_and_parquet_files(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    train, test, _ = fetch(params())
    rows = [{"chosen": r["chosen"], "rejected": r["rejected"]} for r in train + test]
    (tmp_path / "p.json").write_text(json.dumps(rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "p.parquet")
    for name in ("p.json", "p.parquet"):
        tr, te, summary = fetch(params(source="path", path=str(tmp_path / name)))
        assert summary["rows_kept"] == len(rows)
        assert {r["id"] for r in tr} == {r["id"] for r in train}


def test_bad_row_fails_with_file_row_and_field(tmp_path):
    good = {"chosen": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
            "rejected": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "c"}]}
    bad = {**good, "rejected": [{"role": "user", "content": "a"}, {"role": "robot", "content": "c"}]}
    path = write_jsonl(tmp_path / "bad.jsonl", [good, bad])
    with pytest.raises(InputError) as e:
        fetch(params(source="path", path=str(path)))
    assert (e.value.row, e.value.field) == (2, "rejected[1].role")
    assert str(e.value).startswith(f"{path}: row 2: field 'rejected[1].role': unknown role 'robot'")


def test_skip_counts_reasons_and_duplicates(tmp_path):
    good = {"chosen": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
            "rejected": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "c"}]}
    other_split = {f: [{"role": "user", "content": "Name a colour."}, m] for f, m in (("chosen", good["chosen"][1]),
                                                                                   ("rejected", good["rejected"][1]))}
    path = write_jsonl(tmp_path / "mixed.jsonl", [good, good, {"chosen": good["chosen"]}, other_split])
    train, test, summary = fetch(params(source="path", path=str(path), on_invalid="skip"))
    assert summary["rows_kept"] == 2 and len(train) == len(test) == 1
    assert summary["skipped_by_reason"] == {"duplicate pair": 1, "rejected: missing": 1}


def test_hf_loader_reads_a_local_dataset_folder(tmp_path):
    """The real `datasets.load_dataset` path, pointed at a local folder instead of the Hub."""
    train, test, _ = fetch(params())
    folder = tmp_path / "skywork-like"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [{"chosen": r["chosen"], "rejected": r["rejected"], "source": "magpie"}
                                         for r in test[:3] + train])  # limit 10: both splits
    tr, te, summary = fetch(params(source="hf", hf_dataset=str(folder), limit=10))
    assert summary["rows_read"] == 10 and summary["resolved_revision"].startswith("local:")
    assert {r["source"] for r in tr + te} == {"magpie"}


def test_save_to_disk_folders_load_as_path_and_as_hf(tmp_path):
    """Folders written by `datasets`' save_to_disk: a Dataset, and a DatasetDict of which one split is taken
    (fetch.hf_split) and named in the origin."""
    import datasets

    train, test, _ = fetch(params())
    columns = lambda rows: {"chosen": [r["chosen"] for r in rows], "rejected": [r["rejected"] for r in rows]}  # noqa: E731
    datasets.Dataset.from_dict(columns(train + test)).save_to_disk(str(tmp_path / "dataset"))
    first, second = train[:40] + test[:6], train[40:] + test[6:]  # each split of the dict splits again by prompt
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(columns(first)),
                          "test": datasets.Dataset.from_dict(columns(second))}).save_to_disk(str(tmp_path / "dict"))
    ids = lambda *splits: {r["id"] for split in splits for r in split}  # noqa: E731

    tr, te, summary = fetch(params(source="path", path=str(tmp_path / "dataset")))
    assert ids(tr, te) == ids(train, test) and summary["origin"] == f"{tmp_path / 'dataset'} (save_to_disk)"
    tr, te, summary = fetch(params(source="path", path=str(tmp_path / "dict")))
    assert ids(tr, te) == ids(first) and summary["origin"] == f"{tmp_path / 'dict'} (save_to_disk, split train)"
    tr, te, summary = fetch(params(source="hf", hf_dataset=str(tmp_path / "dict"), hf_split="test"))
    assert ids(tr, te) == ids(second) and summary["resolved_revision"] == f"local:{tmp_path / 'dict'}"
    assert summary["origin"] == f"{tmp_path / 'dict'} (save_to_disk, split test)"
    with pytest.raises(InputError) as e:
        fetch(params(source="path", path=str(tmp_path / "dict"), hf_split="validation"))
    assert str(e.value) == (f"{tmp_path / 'dict'}: a save_to_disk DatasetDict without split 'validation' "
                            "(fetch.hf_split); its splits: ['test', 'train']")


def test_a_folder_that_is_no_dataset_is_refused_in_one_line_naming_what_it_holds(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "state.json").write_text("{not json")
    (folder / "data-00000-of-00001.arrow").write_bytes(b"\x00" * 8)
    for p in (params(source="path", path=str(folder)), params(source="hf", hf_dataset=str(folder))):
        with pytest.raises(InputError) as e:
            fetch(p)
        assert str(e.value).startswith(f"{folder}: not a readable save_to_disk folder (holds "
                                       "data-00000-of-00001.arrow, state.json; ") and "\n" not in str(e.value)
    (folder / "state.json").unlink()
    with pytest.raises(InputError) as e:
        fetch(params(source="path", path=str(folder)))
    assert str(e.value) == (f"{folder}: a folder with no .jsonl, .json or .parquet file, and no folder that datasets' "
                            "save_to_disk wrote (holds data-00000-of-00001.arrow)")


def test_a_split_that_leaves_train_or_test_empty_is_an_error(tmp_path):
    good = {"chosen": [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}],
            "rejected": [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Seven."}]}
    path = write_jsonl(tmp_path / "one.jsonl", [good])
    with pytest.raises(InputError) as e:
        fetch(params(source="path", path=str(path)))
    assert str(e.value) == (f"{path}: the split by prompt leaves train empty (pairs kept: 1, distinct prompts: 1, "
                            "fetch.test_fraction: 0.3); fetch more pairs with distinct prompts, or change "
                            "fetch.test_fraction")


def test_the_reserve_is_a_share_of_the_train_prompts_kept_out_of_train():
    from music_rm.data.sources import fetch_with_reserve

    train, test, _ = fetch(params())
    kept, reserve, same_test, summary = fetch_with_reserve(params(reserve_fraction=0.3))
    assert same_test == test and reserve and kept
    assert sorted(r["id"] for r in kept + reserve) == sorted(r["id"] for r in train)
    assert not {r["id"] for r in kept} & {r["id"] for r in reserve}
    assert (summary["train"], summary["reserve"]) == (len(kept), len(reserve))
    assert 0.15 < len(reserve) / len(train) < 0.45
    assert fetch_with_reserve(params())[1] == []


def test_prompts_equal_once_normalised_go_to_the_reserve_together(tmp_path):
    from music_rm.data.sources import fetch_with_reserve

    rows = [{"chosen": [{"role": "user", "content": f"question{gap}{i}"}, {"role": "assistant", "content": "good"}],
             "rejected": [{"role": "user", "content": f"question{gap}{i}"}, {"role": "assistant", "content": "bad"}]}
            for i in range(60) for gap in (" ", "  \t ")]
    train, reserve, test, summary = fetch_with_reserve(
        params(source="path", path=str(write_jsonl(tmp_path / "p.jsonl", rows)), reserve_fraction=0.5))
    assert summary["near_duplicate_prompts"] == 60 and reserve and train
    for split in (train, reserve, test):
        numbers = [r["chosen"][0]["content"].split()[-1] for r in split]
        assert all(numbers.count(n) == 2 for n in numbers)  # both spellings of a prompt on one side


def test_hh_transcripts_with_crlf_line_ends_read_as_with_lf(shared, tmp_path):
    with gzip.open(shared / "hh_rlhf" / "helpful-base" / "test.jsonl.gz", "rt", encoding="utf-8") as f:
        raw = [json.loads(next(f)) for _ in range(30)]
    crlf = [{k: v.replace("\n", "\r\n") for k, v in r.items()} for r in raw]
    assert all(r["chosen"].startswith("\r\n\r\nHuman: ") for r in crlf)
    lf = fetch(params(source="path", path=str(write_jsonl(tmp_path / "lf.jsonl", raw)), format="hh", on_invalid="skip"))
    got = fetch(params(source="path", path=str(write_jsonl(tmp_path / "crlf.jsonl", crlf)), format="hh",
                       on_invalid="skip"))
    assert got[:2] == lf[:2] and got[2]["rows_kept"] == lf[2]["rows_kept"] >= 25


def test_a_folder_of_shards_is_read_whole_and_by_the_split_its_paths_name(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    train, test, _ = fetch(params())
    mixed = [r for i, r in enumerate(train) for r in [r] + test[i // 4: i // 4 + 1] * (i % 4 == 0)]
    items = [{"chosen": r["chosen"], "rejected": r["rejected"]} for r in mixed]  # each slice holds both splits

    def layout(folder, files):
        for name, part in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            if name.endswith(".parquet"):
                pq.write_table(pa.Table.from_pylist(part), folder / name)
            else:
                write_jsonl(folder / name, part)
        return folder

    hub = layout(tmp_path / "hub", {"data/train-00000-of-00002.parquet": items[:20],
                                    "data/train-00001-of-00002.parquet": items[20:40],
                                    "data/test-00000-of-00001.parquet": items[40:]})
    assert fetch(params(source="path", path=str(hub)))[2]["rows_read"] == 40
    assert fetch(params(source="path", path=str(hub), hf_split="test"))[2]["rows_read"] == len(items) - 40
    with pytest.raises(InputError, match=r"its files hold the splits \['test', 'train'\], not 'dev'"):
        fetch(params(source="path", path=str(hub), hf_split="dev"))
    folders = layout(tmp_path / "by-folder", {"train/0000.jsonl": items[:30], "test/0000.jsonl": items[30:]})
    assert fetch(params(source="path", path=str(folders)))[2]["rows_read"] == 30
    prefs = layout(tmp_path / "prefs", {"data/train_prefs-00000-of-00001.parquet": items[:50],
                                        "data/test_prefs-00000-of-00001.parquet": items[50:]})
    assert fetch(params(source="path", path=str(prefs), hf_split="train_prefs"))[2]["rows_read"] == 50
    plain = layout(tmp_path / "parts", {"part-000.jsonl": items[:10], "part-001.jsonl": items[10:]})
    _, _, summary = fetch(params(source="path", path=str(plain)))
    assert summary["rows_read"] == len(items) and summary["origin"] == f"{plain} (2 files)"
    bad = items[:12] + [{"chosen": items[0]["chosen"]}]
    layout(plain, {"part-001.jsonl": bad})
    with pytest.raises(InputError) as e:
        fetch(params(source="path", path=str(plain)))
    assert str(e.value) == f"{plain / 'part-001.jsonl'}: row 13: field 'rejected': missing"  # the shard and its row
