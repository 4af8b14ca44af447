"""core.chats: round trip, listing order, corrupt files, atomic saves on a full disk. No Qt."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from core.atomic import SaveError
from core.chats import Chat, ChatFileError, ChatStore, Message, chats_dir, title_from
from core.settings import data_dir


def _chat(**kw: object) -> Chat:
    chat = Chat(model_path="/models/m.gguf", system="Be brief.", sampling={"temperature": 0.2}, **kw)  # type: ignore[arg-type]
    chat.add("user", "What is 2 + 2?")
    chat.add("assistant", "4", {"tokens": 1, "tokens_per_second": 12.5, "time_to_first_token": 0.3})
    return chat


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    store = ChatStore(tmp_path)
    chat = _chat()
    chat.draft = "half a thought"
    path = store.save(chat)
    assert path == tmp_path / f"{chat.id}.json"
    back = store.load(chat.id)
    assert back == chat
    assert back.messages[1] == Message("assistant", "4", {"tokens": 1, "tokens_per_second": 12.5,
                                                          "time_to_first_token": 0.3})
    assert back.draft == "half a thought"
    assert back.display_title == "What is 2 + 2?"


def test_default_folder_is_under_the_data_dir() -> None:
    assert chats_dir() == data_dir() / "chats"
    chat = _chat()
    ChatStore().save(chat)
    assert (data_dir() / "chats" / f"{chat.id}.json").is_file()


def test_list_is_newest_first_and_skips_corrupt_files(tmp_path: Path) -> None:
    store = ChatStore(tmp_path)
    old, new = _chat(id="a-old", created=1000.0), _chat(id="b-new", created=2000.0)
    old.updated, new.updated = 1000.0, 2000.0
    store.save(new)
    store.save(old)
    (tmp_path / "broken.json").write_text('{"id": "broken", "messages": [', encoding="utf-8")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    (tmp_path / "wrongrole.json").write_text(
        json.dumps({"id": "wrongrole", "messages": [{"role": "robot", "content": "x"}]}), encoding="utf-8")
    (tmp_path / "list.json").write_text("[1, 2]", encoding="utf-8")

    listing = store.list()

    assert [c.id for c in listing.chats] == ["b-new", "a-old"]
    bad = sorted(Path(p.path).name for p in listing.problems)
    assert bad == ["binary.json", "broken.json", "list.json", "wrongrole.json"]
    assert all(isinstance(p, ChatFileError) and p.problem for p in listing.problems)
    assert "robot" in next(str(p) for p in listing.problems if "wrongrole" in p.path)


def test_load_of_missing_or_corrupt_chat_raises_chat_file_error(tmp_path: Path) -> None:
    store = ChatStore(tmp_path)
    with pytest.raises(ChatFileError, match="does not exist"):
        store.load("nope")
    (tmp_path / "bad.json").write_text("not json", encoding="utf-8")
    with pytest.raises(ChatFileError, match="not valid JSON"):
        store.load("bad")


def test_ids_that_could_escape_the_folder_are_refused(tmp_path: Path) -> None:
    store = ChatStore(tmp_path)
    with pytest.raises(ValueError):
        store.path_for("../outside")
    with pytest.raises(ValueError):
        store.save(Chat(id="a/b"))


def test_rename_and_delete(tmp_path: Path) -> None:
    store = ChatStore(tmp_path)
    chat = _chat()
    store.save(chat)
    renamed = store.rename(chat.id, "  Arithmetic   help ")
    assert renamed.title == "Arithmetic help"
    assert store.load(chat.id).display_title == "Arithmetic help"
    store.delete(chat.id)
    assert store.list().chats == ()
    store.delete(chat.id)  # deleting twice is not an error


def test_disk_full_keeps_previous_file_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ChatStore(tmp_path)
    chat = _chat()
    path = store.save(chat)
    before = path.read_bytes()

    chat.add("user", "and 3 + 3?")

    def full(*_a: object, **_k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(SaveError) as info:
        store.save(chat)
    assert "disk is full" in str(info.value)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind
    assert len(store.load(chat.id).messages) == 2


def test_unwritable_location_raises_save_error(tmp_path: Path) -> None:
    # A file where the chats folder should be: works the same as root and as a normal user.
    blocker = tmp_path / "chats"
    blocker.write_text("not a folder", encoding="utf-8")
    with pytest.raises(SaveError, match="previous version is intact"):
        ChatStore(blocker).save(_chat())
    assert blocker.read_text(encoding="utf-8") == "not a folder"


def test_title_from_long_text_cuts_at_a_word() -> None:
    text = "Please explain   how the KV cache grows with context length on a T4 card"
    title = title_from(text)
    # 48 chars of the collapsed text end inside "context"; the title drops the partial word.
    assert title == "Please explain how the KV cache grows with…"
    assert title_from("short\nquestion") == "short question"


def test_newer_format_is_reported_not_guessed(tmp_path: Path) -> None:
    (tmp_path / "future.json").write_text(json.dumps({"version": 99, "id": "future"}), encoding="utf-8")
    listing = ChatStore(tmp_path).list()
    assert listing.chats == ()
    assert "newer LayerFit" in str(listing.problems[0])
