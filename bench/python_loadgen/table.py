"""The table of bench/python_loadgen.sh from its points (JSON lines)."""
import json
import statistics
import sys

points = [json.loads(l) for l in open(sys.argv[1])]


def pick(who, kind, how, level=None):
    return [p for p in points if p["who"] == who and p["kind"] == kind and p["how"] == how
            and (level is None or p["level"] == level)]


rows = []
for how in ["inline", "fast"]:
    o = statistics.median(p["seconds"] for p in pick("ours", "offline", how))
    t = statistics.median(p["seconds"] for p in pick("theirs", "offline", how))
    rows.append((f"Offline 1 M samples, {how}: StartTest seconds (median)", o, t, o / t, "<= 0.5"))
for how in ["inline", "thread"]:
    o = statistics.median(p["p99_ns"] for p in pick("ours", "server", how, 50000.0))
    t = statistics.median(p["p99_ns"] for p in pick("theirs", "server", how, 50000.0))
    rows.append((f"Server 50 k QPS, {how}: p99 latency us (median)", o / 1e3, t / 1e3, o / t, "<= 0.5"))
for how in ["inline", "thread"]:
    best = {}
    for who in ["ours", "theirs"]:
        valid = [p["level"] for p in pick(who, "server", how) if p["valid"]]
        best[who] = max(valid) if valid else 0
    rows.append((f"Server highest VALID QPS, {how}", best["ours"], best["theirs"],
                 best["ours"] / best["theirs"] if best["theirs"] else float("inf"), ">= 2"))
fast = statistics.median(p["seconds"] for p in pick("ours", "offline", "fast"))
plain = statistics.median(p["seconds"] for p in pick("ours", "offline", "inline"))
rows.append(("ours: ConstructFastSUT / ConstructSUT time (Offline 1 M)", fast, plain, fast / plain, "<= 1"))

print(f"{'measure':62} {'ours':>12} {'MLCommons':>12} {'ratio':>8}  target")
for name, o, t, r, target in rows:
    print(f"{name:62} {o:12.4g} {t:12.4g} {r:8.3f}  {target}")
