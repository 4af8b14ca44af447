"""Fault suite for stored data (issue 16, cases 1, 3 and 7): hostile values, special files, huge and deep
files, interrupted saves and two writers. Nothing here may stop the app, hang it or lose a chat. No Qt."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core import calibration
from core.atomic import SaveError, clean_stale_temps, write_json_atomic
from core.chats import Chat, ChatStore
from core.instance import InstanceLock
from core.safeload import StoredFileError, read_json
from core.settings import AppSettings

DEEP = "[" * 100_000 + "]" * 100_000
HUGE_INT = "9" * 5000


def _no_hang(fn: Callable[[], Any], limit: float = 60.0) -> Any:
    """Run ``fn`` in a thread; fail (instead of hanging the suite) if it never returns. A hang guard,
    not a speed check: the limit is far above any normal run."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # re-raised below, on the test's thread
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(limit)
    assert not t.is_alive(), "the call never returned (it blocked on the file)"
    if "error" in out:
        raise out["error"]
    return out["value"]


def _good_chat(store: ChatStore) -> Chat:
    chat = Chat(title="kept")
    chat.add("user", "hello")
    store.save(chat)
    return chat


def _raw_chat(cid: str, created: str, updated: str) -> str:
    return (f'{{"version": 1, "id": "{cid}", "created": {created}, "updated": {updated}, '
            f'"messages": [{{"role": "user", "content": "still here"}}]}}')


@pytest.mark.parametrize(("created", "updated"), [
    ("1700000000", "NaN"),
    ("1700000000", "Infinity"),
    ("1700000000", "-Infinity"),
    ("1700000000", "1e300"),
    ("1700000000", "-1e12"),
    ("1e400", "1700000000"),
    ("1700000000", HUGE_INT),
    (HUGE_INT, "1e400"),
])
def test_a_hostile_date_keeps_the_chat_and_its_messages(tmp_path: Path, created: str, updated: str) -> None:
    store = ChatStore(tmp_path)
    good = _good_chat(store)
    cid = "20250101-000000-deadbeef"
    (tmp_path / f"{cid}.json").write_text(_raw_chat(cid, created, updated), encoding="utf-8")
    listing = store.list()
    assert not listing.problems
    ids = {c.id for c in listing.chats}
    assert ids == {good.id, cid}
    hostile = next(c for c in listing.chats if c.id == cid)
    assert [m.content for m in hostile.messages] == ["still here"]
    # every date is one the platform can show, and the list/tooltips can format it
    for c in listing.chats:
        assert 0 <= c.created <= 253402300799 and 0 <= c.updated <= 253402300799
        assert c.updated_text()[:2] in ("19", "20")


def test_updated_text_never_raises_for_a_date_set_in_code() -> None:
    chat = Chat(created=1.0)
    chat.updated = 1e300
    assert chat.updated_text() == "unknown date"


@pytest.mark.parametrize("body", [
    DEEP,
    '{"version": 1, "id": "x", "messages": ' + DEEP + "}",
    "\x00\x01\x02 not json",
    '{"version": 1, "id": "20250101-000000-deadbeef", "messages": "nope"}',
    '{"version": 1, "id": "20250101-000000-deadbeef", "messages": [{"role": "robot", "content": 1}]}',
])
def test_a_damaged_chat_is_set_aside_once_and_the_rest_load(tmp_path: Path, body: str) -> None:
    store = ChatStore(tmp_path)
    good = _good_chat(store)
    bad = tmp_path / "20250101-000000-deadbeef.json"
    bad.write_text(body, encoding="utf-8")
    first = store.list()
    assert [c.id for c in first.chats] == [good.id]
    assert len(first.problems) == 1
    assert "kept aside as" in first.problems[0].problem
    assert not bad.exists()
    assert len(list(tmp_path.glob("*.json.bad-*"))) == 1  # nothing deleted
    second = store.list()  # told once: the next start is clean
    assert [c.id for c in second.chats] == [good.id]
    assert second.problems == ()


def test_a_chat_from_a_newer_layerfit_is_reported_and_left_alone(tmp_path: Path) -> None:
    store = ChatStore(tmp_path)
    good = _good_chat(store)
    newer = tmp_path / "20250101-000000-deadbeef.json"
    newer.write_text('{"version": 99, "id": "20250101-000000-deadbeef", "messages": []}', encoding="utf-8")
    listing = store.list()
    assert [c.id for c in listing.chats] == [good.id]
    assert len(listing.problems) == 1 and "newer LayerFit" in listing.problems[0].problem
    assert newer.exists() and not list(tmp_path.glob("*.bad-*"))


def test_a_fifo_as_a_chat_file_does_not_block_the_list(tmp_path: Path) -> None:
    store = ChatStore(tmp_path)
    good = _good_chat(store)
    os.mkfifo(tmp_path / "20250101-000000-deadbeef.json")
    listing = _no_hang(store.list)
    assert [c.id for c in listing.chats] == [good.id]
    assert len(listing.problems) == 1 and "not a regular file" in listing.problems[0].problem
    assert (tmp_path / "20250101-000000-deadbeef.json").exists()  # not ours to move: only reported


def test_a_fifo_as_the_last_chat_is_skipped(tmp_path: Path) -> None:
    store = ChatStore(tmp_path)
    good = _good_chat(store)
    os.mkfifo(tmp_path / "20250101-000000-deadbeef.json")
    recent = _no_hang(lambda: store.most_recent(["20250101-000000-deadbeef"]))
    assert recent is not None and recent.id == good.id


@pytest.mark.parametrize("body", [DEEP, '{"headroom_mib": ' + DEEP + "}", "NaN", "[1, 2"])
def test_damaged_settings_are_set_aside_and_the_user_is_told_once(body: str) -> None:
    from core.settings import settings_path

    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body, encoding="utf-8")
    s = AppSettings.load()
    assert s == AppSettings()
    assert s.notice is not None and "kept aside" in s.notice and "damaged" in s.notice
    assert s.read_problem is None
    s.save()  # defaults may replace the damaged file: it was kept aside
    assert len(list(path.parent.glob("settings.json.bad-*"))) == 1
    again = AppSettings.load()
    assert again.notice is None


def test_settings_values_out_of_range_fall_back_one_by_one() -> None:
    from core.settings import settings_path

    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"headroom_mib": NaN, "model_folders": ["/a"], "last_chat_id": "c1", '
                    f'"hardware_choice": "this machine", "load_settings": {{"n_ctx": {HUGE_INT}}}}}',
                    encoding="utf-8")
    s = AppSettings.load()
    assert s.model_folders == ["/a"] and s.last_chat_id == "c1"
    assert s.headroom_mib == AppSettings().headroom_mib
    assert s.notice is not None and "headroom_mib" in s.notice
    path.write_text('{"headroom_mib": 1e300}', encoding="utf-8")
    assert AppSettings.load().headroom_mib == AppSettings().headroom_mib


def test_a_fifo_as_settings_gives_defaults_that_refuse_to_overwrite_it() -> None:
    from core.settings import settings_path

    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    s = _no_hang(AppSettings.load)
    assert s == AppSettings()
    assert s.read_problem is not None and "not a regular file" in s.read_problem
    assert s.notice is not None
    with pytest.raises(SaveError):
        s.save()


def test_huge_settings_are_refused_before_reading() -> None:
    from core.settings import settings_path

    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:  # sparse: 200 MB to the parser, nothing on disk
        f.write(b"{")
        f.truncate(200 * 2**20)
    s = AppSettings.load()
    assert s == AppSettings() and s.notice is not None and "MB" in s.notice
    assert not path.exists()


def test_calibration_ignores_hostile_numbers_and_survives_a_deep_file() -> None:
    path = calibration.calibration_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"version": 1, "gpus": {"g": {"deltas": [NaN, Infinity, 1e400, ' + HUGE_INT
                    + ', 1048576]}}, "cpus": {"c": {"ratios": [NaN, 2.0]}}}', encoding="utf-8")
    assert calibration.overhead_correction("g") == 1048576
    assert calibration.cpu_speed_ratio("c") == 2.0
    path.write_text(DEEP, encoding="utf-8")
    assert calibration.overhead_correction("g") == 0


def test_the_loader_rejects_what_json_would_choke_on(tmp_path: Path) -> None:
    p = tmp_path / "x.json"
    p.write_text(DEEP, encoding="utf-8")
    with pytest.raises(StoredFileError) as e:
        read_json(p, 2**20)
    assert e.value.kind == "damaged" and "deeply" in e.value.problem
    p.write_text('{"a": [NaN, 1e999, ' + HUGE_INT + ", 5]}", encoding="utf-8")
    value, replaced = read_json(p, 2**20)
    assert value == {"a": [None, None, None, 5]} and replaced == 3
    with pytest.raises(StoredFileError) as e:
        read_json(tmp_path, 2**20)
    assert e.value.kind == "special"
    with pytest.raises(StoredFileError) as e:
        read_json(tmp_path / "a\x00b", 2**20)
    assert e.value.kind == "unreadable"


def test_stale_temp_files_from_interrupted_saves_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "chat.json"
    write_json_atomic(target, {"a": 1})
    stale = tmp_path / ".chat.json.ab_cd123.tmp"
    fresh = tmp_path / ".chat.json.zz_zz999.tmp"
    other = tmp_path / ".notes.tmp"  # not a name our saves make
    for f in (stale, fresh, other):
        f.write_bytes(b"x" * 100)
    old = time.time() - 3600
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    assert clean_stale_temps(tmp_path) == 1
    assert not stale.exists() and fresh.exists() and other.exists() and target.exists()


def test_save_errors_read_as_words(tmp_path: Path) -> None:
    (tmp_path / "c.json").mkdir()
    with pytest.raises(SaveError) as e:
        write_json_atomic(tmp_path / "c.json", {})
    assert "Errno" not in str(e.value) and "folder" in str(e.value)
    with pytest.raises(SaveError) as e:
        AppSettings(read_problem="x").save(tmp_path / "s.json")
    assert "Errno" not in str(e.value)


# --- two writers ------------------------------------------------------------------------------

def _writer(data_dir: str, cid: str, tag: str, go: Any, result: Any) -> None:
    """One 'LayerFit window': take the data-folder lock, then append 50 messages, saving after each."""
    lock = InstanceLock(Path(data_dir))
    go.wait(30)
    if not lock.acquire():
        result.put((tag, "refused"))
        return
    store = ChatStore(Path(data_dir) / "chats")
    chat = store.load(cid)
    for i in range(50):
        chat.add("user", f"{tag}-{i}")
        store.save(chat)
    time.sleep(0.5)  # hold the lock while the other window tries
    result.put((tag, "wrote"))
    lock.release()


def test_two_processes_saving_the_same_chat_lose_nothing(tmp_path: Path) -> None:
    store = ChatStore(tmp_path / "chats")
    chat = Chat()
    chat.add("user", "first")
    store.save(chat)
    ctx = multiprocessing.get_context("spawn")
    go, result = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), chat.id, tag, go, result)) for tag in "AB"]
    for p in procs:
        p.start()
    go.set()
    outcomes = dict(result.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(30)
    assert sorted(outcomes.values()) == ["refused", "wrote"]
    writer = next(t for t, o in outcomes.items() if o == "wrote")
    saved = store.load(chat.id)
    # every message the window that was allowed to write saved is on disk; the refused one wrote nothing
    assert [m.content for m in saved.messages] == ["first"] + [f"{writer}-{i}" for i in range(50)]


def test_the_lock_is_free_again_when_its_holder_is_killed(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    p = ctx.Process(target=_hold_lock, args=(str(tmp_path), ready))
    p.start()
    assert ready.wait(60)
    mine = InstanceLock(tmp_path)
    assert not mine.acquire()
    assert mine.holder_pid() == p.pid
    p.kill()
    p.join(30)
    assert mine.acquire()
    mine.release()


def _hold_lock(folder: str, ready: Any) -> None:
    lock = InstanceLock(Path(folder))
    assert lock.acquire()
    ready.set()
    time.sleep(600)


def test_json_written_by_a_saved_chat_reads_back(tmp_path: Path) -> None:
    """The bounded loader reads everything LayerFit writes, including long and unusual text."""
    store = ChatStore(tmp_path)
    chat = Chat()
    chat.add("user", "x" * 1_000_000)
    chat.add("assistant", "\u202e\x00\ud7ff 😀 <b>bold</b>")
    store.save(chat)
    back = store.load(chat.id)
    assert back == chat
    assert json.loads((tmp_path / f"{chat.id}.json").read_text(encoding="utf-8"))["id"] == chat.id
