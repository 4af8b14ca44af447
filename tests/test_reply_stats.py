"""core.reply_stats: a reply's numbers as a dataclass, read from and written to a chat's JSON."""

from __future__ import annotations

from core.reply_stats import ReplyStats


def test_round_trip_keeps_only_what_says_something() -> None:
    s = ReplyStats(tokens=42, tokens_per_second=18.25, time_to_first_token=0.21, finish_reason="stop")
    d = s.to_dict()
    assert d == {"tokens": 42, "tokens_per_second": 18.25, "time_to_first_token": 0.21, "finish_reason": "stop"}
    assert ReplyStats.from_dict(d) == s


def test_a_hand_edited_chat_cannot_break_the_numbers() -> None:
    s = ReplyStats.from_dict({"tokens": "many", "tokens_per_second": 3, "stopped": 1, "error": None, "x": 5})
    assert s == ReplyStats(tokens_per_second=3.0)
    assert ReplyStats.from_dict(["not", "a", "dict"]) == ReplyStats()


def test_merged_and_text() -> None:
    live = ReplyStats(tokens=10, tokens_per_second=9.0, time_to_first_token=0.5)
    final = live.merged(ReplyStats(tokens=12, finish_reason="length"))
    assert (final.tokens, final.tokens_per_second, final.finish_reason) == (12, 9.0, "length")
    assert final.text() == "12 tokens · 9.0 tok/s · first token 0.50 s · hit the token limit"
    assert ReplyStats(tokens=1, stopped=True, error="boom").text() == "1 token · stopped · error: boom"
