#!/usr/bin/env python3
"""benches/ambiguity.py — which commits did production's reads see? (sysbench oltp_read_write)

For every read inside a transaction of a sysbench oltp_read_write capture, finds the other
sessions' transactions that wrote a row the read reads and whose COMMIT overlapped the
transaction's view point (its first SELECT) in the recording, and tells, for reads with
exactly one such commit, how often the replay's answer differs from production's, binned by
where that commit ended: before the view point ended (`B`, by fifths of the view point's
interval: the replay's rule says the read saw it) or after (`A`, by 100 µs past its end,
and whether the commit had started before the view point did: the rule says it did not).
A bin whose difference share stays under 50 % is one where the rule already takes
production's majority: no cut by these times does better there.

Then, for the reads that differ with exactly one such commit: did the replay's view see that
commit (it ran before the view was taken here, so production's view was *earlier*: no re-read
can reach it, as re-reads only go forward) or not (production's was later: a re-read round
can reach it while that state lasts)? For the earlier ones, whether a snapshot taken as the
view's session reached it and the commits that ended before the view started had run here
(`START TRANSACTION WITH CONSISTENT SNAPSHOT` on a spare connection, with no wait added to any
commit) would not have seen it: production's state, for that read.

Last, the reads that differ with no such commit (their rows were not written by any commit
they overlapped), split by what the replay did with the rows' writers: the last one that
ended before the view began had not been answered when the view was sent (`missed an
earlier writer`), the first one that began after it ended had (`saw a later writer`), or
neither (the rows already differed: an earlier write's order or result); and the replay's
labels of all the differing reads, by how many such commits they had.

Usage: myrr inspect --format jsonl capture.myrr > cap.jsonl
       myrr inspect --format jsonl replay.myrr > rep.jsonl
       benches/ambiguity.py cap.jsonl rep.jsonl
"""
import bisect
import collections
import json
import re
import sys


def main(capture, replay):
    sql, evs = {}, collections.defaultdict(list)
    for line in open(capture):
        e = json.loads(line)
        if e.get("event") != "exchange":
            continue
        if e["command"] == "prepare":
            sql[(e["session"], e["prepared_id"])] = e["sql"]
        evs[e["session"]].append(e)
    rep, labels = {}, {}
    for line in open(replay):
        e = json.loads(line)
        if e.get("event") == "exchange" and e["command"] in ("execute", "query"):
            rep[(e["session"], e["seq"])] = e
        elif e.get("event") == "order_label":
            labels[(e["session"], e["seq"])] = tuple(e["labels"])
    commits, reads = [], []
    for s, xs in evs.items():
        txn = None
        for e in xs:
            if e["command"] != "execute":
                continue
            q, p = sql.get((s, e["stmt_id"]), ""), e.get("params") or []
            if q == "BEGIN":
                txn = {"view": None, "writes": set(), "reads": []}
            elif q == "COMMIT":
                if txn is not None:
                    done = rep.get((s, e["seq"]), {}).get("end_us")
                    commits.append((e["end_us"], e["start_us"], s, frozenset(txn["writes"]), done))
                    reads.extend(r + (txn["view"],) for r in txn["reads"])
                txn = None
            elif txn is not None:
                m = re.search(r"(sbtest\d+)", q)
                t = m.group(1) if m else None
                if q.startswith("SELECT"):
                    if txn["view"] is None:
                        txn["view"] = (e["start_us"], e["end_us"], s, e["seq"])
                    rng = (p[0], p[1]) if "BETWEEN" in q else (p[0], p[0])
                    txn["reads"].append((s, e["seq"], t, rng))
                elif q.startswith("UPDATE"):
                    txn["writes"].add((t, p[-1]))
                elif q.startswith(("DELETE", "INSERT")):
                    txn["writes"].add((t, p[0]))
    commits.sort()
    ends = [c[0] for c in commits]
    byseq = {(e["session"], e["seq"]): e for xs in evs.values() for e in xs}
    # The replay's latest answer among the commits that ended (recorded) up to each one.
    done_by, latest = [], 0
    for C in commits:
        latest = max(latest, C[4] or 0)
        done_by.append(latest)
    stats, where = collections.Counter(), collections.Counter()
    by_labels, unwritten = collections.Counter(), collections.Counter()
    for s, seq, t, rng, (vs, ve, vsession, vseq) in reads:
        c, r = byseq.get((s, seq)), rep.get((s, seq))
        if r is None or c is None or "digest" not in c:
            continue
        conf = []
        for C in commits[bisect.bisect_right(ends, vs):]:
            if C[1] >= ve:
                if C[0] > ve + 50_000:
                    break
                continue
            if C[2] != s and any(w[0] == t and rng[0] <= w[1] <= rng[1] for w in C[3]):
                conf.append(C)
        differs = c["digest"] != r.get("digest")
        if differs:
            by_labels[(min(len(conf), 3), labels.get((s, seq), ()))] += 1
        if differs and not conf:
            unwritten[unwritten_kind(commits, ends, rep.get((vsession, vseq)), s, t, rng, vs, ve)] += 1
        if len(conf) != 1:
            stats[("overlapped commits", min(len(conf), 3), not differs)] += 1
            continue
        C = conf[0]
        view = rep.get((vsession, vseq))
        if c["digest"] != r.get("digest") and view is not None and C[4] is not None:
            if C[4] < view["start_us"]:
                i = bisect.bisect_left(ends, vs)
                lower = max(view["scheduled_us"], done_by[i - 1] if i else 0)
                where[("earlier", C[4] > lower)] += 1
            else:
                where[("later", None)] += 1
        if C[0] < ve:
            b = ("B", f"ended in fifth {min(int((C[0] - vs) / max(ve - vs, 1) * 5), 4) + 1}")
        else:
            started = "started before" if C[1] < vs else "started during"
            b = ("A", started, f"ended +{min((C[0] - ve) // 100, 10) * 100} µs")
        stats[(b, c["digest"] == r.get("digest"))] += 1
    for b in sorted({k[0] for k in stats if k[0] != "overlapped commits"}, key=str):
        same, diff = stats[(b, True)], stats[(b, False)]
        print(" ".join(b), f"| same {same} | differ {diff} | {100 * diff / max(same + diff, 1):.1f} %")
    earlier = where[("earlier", True)] + where[("earlier", False)]
    print(f"differing with one such commit: production's view earlier {earlier} (a snapshot at "
          f"the view's lower bound had not seen that commit: {where[('earlier', True)]}), "
          f"later {where[('later', None)]}")
    for n in range(4):
        same, diff = stats[("overlapped commits", n, True)], stats[("overlapped commits", n, False)]
        if same + diff:
            label = f"{n}+" if n == 3 else str(n)
            print(f"reads with {label} such commits | same {same} | differ {diff}")
    print("differing with no such commit:", ", ".join(f"{k} {v}" for k, v in unwritten.most_common()))
    for (n, ls), v in by_labels.most_common(12):
        print(f"differing with {n}{'+' if n == 3 else ''} such commits, labelled {', '.join(ls) or 'nothing'}: {v}")


def unwritten_kind(commits, ends, view, s, t, rng, vs, ve):
    """What the replay did with the writers of a read's rows that no overlapped commit wrote."""
    if view is None:
        return "view not replayed"
    writes = lambda C: C[2] != s and any(w[0] == t and rng[0] <= w[1] <= rng[1] for w in C[3])
    i = bisect.bisect_right(ends, vs)
    before = next((C for C in reversed(commits[max(0, i - 3000):i]) if writes(C)), None)
    after = next((C for C in commits[i:i + 20000] if C[1] >= ve and writes(C)), None)
    kinds = []
    if before is not None and before[4] is not None and before[4] > view["start_us"]:
        kinds.append("missed an earlier writer")
    if after is not None and after[4] is not None and after[4] < view["start_us"]:
        kinds.append("saw a later writer")
    return " and ".join(kinds) or "neither"


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
