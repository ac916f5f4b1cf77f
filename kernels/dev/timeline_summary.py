"""Where a decode step's time goes under PDL, from bench-engine's timeline CSV (build.sh --timeline).

Usage: python3 kernels/dev/timeline_summary.py timeline-b1.csv
Groups the CTA records into launches (a launch's records are consecutive as a rule: include/zamba2-timeline.cuh), splits
them into steps at the argmax launch, names each GEMV by its neighbours, and prints per role, averaged over the
steps after the first: launches per step, and per launch the chain time (its last CTA's end minus the previous
launch's), split into the wait (its first CTA past the PDL wait minus the previous end) and the work after release;
also how long before the previous end its first CTA started. Kernels without records (embedding gather, the final
norm) count in the next recorded launch's wait. The step's first recorded launch is a row of its own (role*): the
time between steps (the host's copies and graph launch) is in its wait, and averaged into its role's row it read as
~7 us of late start per persistent launch (run 106).
Where the CSV has the kernels' own marks (t_mark0, t_mark1: skinny_gemm's input staged and first item done, the
state step's update done and its block sum done), a second table gives per role the median CTA's phases after
the release: its wait skew (a CTA's wait also waits for the weight loads it issued before it), then each phase.
"""
import statistics
import csv
import sys
from collections import defaultdict

TAGS = {1: "skinny", 2: "state", 3: "attn", 4: "argmax", 5: "persist"}


def launches(path):
    """CTA records -> launches, in claim order. A launch's CTAs claim consecutive indices as a rule; a record
    that arrives while an earlier launch of the same kernel and grid still misses that block joins it."""
    with open(path, newline="") as f:
        recs = [{k: int(v) for k, v in r.items() if v is not None} for r in csv.DictReader(f)]
    groups, open_groups, bad = [], [], 0
    for r in recs:
        if r["grid"] == 0:  # claimed, never written
            bad += 1
            continue
        home = next((g for g in open_groups if g["tag"] == r["tag"] and g["grid"] == r["grid"]
                     and r["block"] not in g["blocks"]), None)
        if home is None:
            home = {"tag": r["tag"], "grid": r["grid"], "blocks": set(), "recs": []}
            groups.append(home)
            open_groups.append(home)
        home["blocks"].add(r["block"])
        home["recs"].append(r)
        if len(home["recs"]) == home["grid"]:
            open_groups.remove(home)
    out = []
    for g in groups:
        if len(g["recs"]) != g["grid"]:
            bad += len(g["recs"])
            continue
        grp = g["recs"]
        rel = min(r["t_waited"] for r in grp)
        phases = None
        if all(r.get("t_mark0", 0) and r.get("t_mark1", 0) for r in grp):
            phases = [statistics.median((r[b] - r[a]) / 1e3 for r in grp)
                      for a, b in (("t_waited", "t_mark0"), ("t_mark0", "t_mark1"), ("t_mark1", "t_end"))]
            phases.insert(0, statistics.median((r["t_waited"] - rel) / 1e3 for r in grp))
            # the CTA's last warp past its wait, after thread 0's (0 when the CSV predates the column)
            phases.append(statistics.median((r["t_waited_last"] - r["t_waited"]) / 1e3 if r.get("t_waited_last") else 0.0
                                            for r in grp))
        out.append({
            "phases": phases,
            "tag": TAGS.get(g["tag"], str(g["tag"])), "grid": g["grid"],
            "start": min(r["t_start"] for r in grp), "start_last": max(r["t_start"] for r in grp),
            "released": min(r["t_waited"] for r in grp), "end": max(r["t_end"] for r in grp),
        })
    return out, bad


def name_roles(step):
    tags = [l["tag"] for l in step]
    for k, l in enumerate(step):
        if l["tag"] != "skinny":
            l["role"] = l["tag"]
            continue
        nxt = tags[k + 1] if k + 1 < len(tags) else None
        prv = step[k - 1]["role"] if k > 0 else None
        l["role"] = ("in_proj" if nxt == "state" else "out_proj" if prv == "state" else "qkv" if nxt == "attn" else
                     "o_proj" if prv == "attn" else "gate_up" if prv == "o_proj" else "down" if prv == "gate_up" else
                     "lm_head" if nxt == "argmax" else "skinny")


def main():
    ls, bad = launches(sys.argv[1])
    steps, cur = [], []
    for l in ls:
        cur.append(l)
        if l["tag"] == "argmax":
            steps.append(cur)
            cur = []
    if len(steps) < 2:
        print(f"timeline: {len(steps)} whole steps ({bad} records out of place): need 2")
        return
    for s in steps:
        name_roles(s)
    agg = defaultdict(lambda: defaultdict(float))
    step_us = []
    for si in range(1, len(steps)):
        prev_end = steps[si - 1][-1]["end"]
        step_us.append((steps[si][-1]["end"] - prev_end) / 1e3)
        for k, l in enumerate(steps[si]):
            a = agg[(l["role"] + ("*" if k == 0 else ""), l["grid"])]
            a["n"] += 1
            a["chain"] += (l["end"] - prev_end) / 1e3
            a["wait"] += (l["released"] - prev_end) / 1e3
            a["work"] += (l["end"] - l["released"]) / 1e3
            a["early"] += (prev_end - l["start"]) / 1e3
            a["late"] += (l["start_last"] - prev_end) / 1e3
            prev_end = l["end"]
    n_steps = len(steps) - 1
    mean_step = sum(step_us) / n_steps
    print(f"timeline: {n_steps} steps, {mean_step:.1f} us per step ({', '.join(f'{s:.1f}' for s in step_us)}); "
          f"{bad} records out of place")
    print(f"{'role':10s} {'grid':>5s} {'n/step':>7s} {'chain us':>9s} {'wait':>7s} {'work':>7s} {'1st CTA early':>14s} "
          f"{'last CTA late':>14s} {'us/step':>8s} {'share':>6s}")
    for (role, grid), a in sorted(agg.items(), key=lambda kv: -kv[1]["chain"]):
        n = a["n"]
        print(f"{role:10s} {grid:5d} {n / n_steps:7.1f} {a['chain'] / n:9.2f} {a['wait'] / n:7.2f} {a['work'] / n:7.2f} "
              f"{a['early'] / n:14.2f} {a['late'] / n:14.2f} {a['chain'] / n_steps:8.1f} {100 * a['chain'] / n_steps / mean_step:5.1f}%")
    print("  *: the step's first recorded launch, apart: its wait and chain include the time between steps (the host's\n"
          "     copies and graph launch, the kernels without records)")
    tot = defaultdict(float)
    for a in agg.values():
        for k in ("wait", "work"):
            tot[k] += a[k] / n_steps
    print(f"per step: wait {tot['wait']:.1f} us, work after release {tot['work']:.1f} us")
    ph = defaultdict(list)
    for s in steps[1:]:
        for l in s:
            if l["phases"]:
                ph[(l["role"], l["grid"])].append(l["phases"])
    if ph:
        print("median CTA after release, us (skinny: staging, first item, the rest; state: update, block sum, end; persist: layer 0, the middle layers, the last)")
        print("  (last warp: how long after thread 0 the CTA's last warp got past its wait; inside phase 1)")
        print(f"{'role':10s} {'grid':>5s} {'wait skew':>10s} {'phase 1':>8s} {'phase 2':>8s} {'phase 3':>8s} {'last warp':>10s}")
        for (role, grid), rows in sorted(ph.items(), key=lambda kv: kv[0]):
            m = [sum(r[i] for r in rows) / len(rows) for i in range(5)]
            print(f"{role:10s} {grid:5d} {m[0]:10.2f} {m[1]:8.2f} {m[2]:8.2f} {m[3]:8.2f} {m[4]:10.2f}")


if __name__ == "__main__":
    main()
