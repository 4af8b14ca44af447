"""`layerfit doctor`: one screen that says what this machine can do."""

from __future__ import annotations

import argparse
import json

from core.doctor import diagnose, report_dict

_MARK = {"ok": "✔", "warn": "!", "fail": "✘", "info": "·"}


def run(args: argparse.Namespace) -> int:
    findings = diagnose()
    if args.json:
        print(json.dumps(report_dict(findings), indent=2))
    else:
        width = max(len(f.topic) for f in findings)
        for f in findings:
            print(f"{_MARK[f.status]} {f.topic:<{width}}  {f.detail}")
            if f.action:
                print(f"  {'':<{width}}  → {f.action}")
        n = report_dict(findings)["problems"]
        ran = any(f.topic == "Decode check" and f.status == "ok" for f in findings)
        if n == 0 and ran:
            print("\nAll good: a model really ran here.")
        else:
            print(f"\n{max(n, 1)} thing(s) to look at (see → above).")
    return 1 if any(f.status == "fail" for f in findings) else 0
