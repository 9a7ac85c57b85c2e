#!/usr/bin/env python3
"""Scaling quality of `prescale simulate` on the visible real traces, tuned and held out.

usage: python3 scripts/quality.py --traces DIR [--bin target/release/prescale]
           [--parts tune,held-out,full,slices] [--startup 5m,10m] [--only NAME,...]
           [--frontier [Q,...]] [--jobs N] [-- EXTRA SIMULATE ARGS]

DIR holds the traces of ../shared/data/traces (they are read there and cut into a
temporary folder, never copied into the repository). Every run uses the same settings:
the defaults, targetPerReplica = the trace's peak / 25 (the whole trace's peak for a part
of a multi-week trace, so a part is scored in the same world), and the lead time equal to
the start-up. Parts (docs/quality.md):

  tune      what the sizing was developed on: each multi-week trace without its last week,
            the first week left out of the score (2 days for traces of 8-9 days); a day
            cut from the 14-day LLM trace (its third day); the Azure code hour
  held-out  what it is reported on: the last week of each multi-week trace (all before
            it is history); the 1-day multimodal trace; the Mooncake chat hour
  full      each whole trace with simulate's default warm-up (7 days on traces of 14
            days or more), as earlier tables of docs/quality.md
  slices    new scalers on traffic nobody tuned for: every whole day, and 24 hours drawn
            with a fixed seed, of each multi-day trace and the multimodal day, each run as
            a trace of its own (no history before it, its own peak / 25, the first 15
            minutes left out of the score: the simulator's cold start at one replica);
            printed as sums per trace and length (a table of its own)

Prints one Markdown row per run: violation steps prescale / reactive, cost vs the
reactive baseline, the equal-budget ratio with the HPA's violations at that budget, and
simulate's verdict. Standard library only.
"""
import argparse
import concurrent.futures
import csv
import os
import random
import re
import subprocess
import sys
import tempfile

DAY = 1440  # rows of a day at one minute
WEEK = 7 * DAY


def read(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0][:2], [r[:2] for r in rows[1:]]


def peak(rows):
    return max(float(r[1]) for r in rows if r[1] not in ("", "NaN"))


def write(folder, name, header, rows):
    path = os.path.join(folder, name + ".csv")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


BUNDLED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "traces",
                       "llm-proxy-21d.csv")
SLICE_HOURS = 24
SLICED = ["nasa_http_1995_jul", "servegen_language_m_large", "alibaba_genai_sd_nov",
          "servegen_multimodal_mm_image"]


def slices(traces, tmp):
    """(label, "day"|"hour", csv path, target per replica, warm-up) of every slice."""
    out = []
    paths = [(n, os.path.join(traces, n + ".csv")) for n in SLICED] + [("bundled", BUNDLED)]
    for name, path in paths:
        header, rows = read(path)
        for length, kind in [(DAY, "day"), (60, "hour")]:
            starts = list(range(0, len(rows) - length + 1, length))
            if kind == "hour":
                starts = sorted(random.Random(7).sample(starts, min(SLICE_HOURS, len(starts))))
            for s in starts:
                part = rows[s: s + length]
                if peak(part) <= 0:
                    continue
                out.append((name, kind, write(tmp, f"{name}_{kind}_{s}", header, part),
                            peak(part) / 25, "15m"))
    return out


def slice_table(cases_, outs):
    """Sums per trace, slice length and start-up."""
    sums = {}
    for (name, kind, _, _, _, startup), out in zip(cases_, outs):
        r = parse(out)
        if r["same"] is None:
            continue
        t = sums.setdefault((name, kind, startup), [0, 0, 0, 0, 0, 0])
        t[0] += r["viol"]
        t[1] += r["same"]
        t[2] += r["steps"]
        t[3] += r["rsteps"]
        t[4] += 1
        t[5] += r["viol"] > r["same"]
    print("| trace | slices | start-up | violation steps prescale / HPA at the same budget "
          "| equal budget | cost vs reactive | slices worse |")
    print("|---|---|---|---|---|---|---|")
    for (name, kind, startup), t in sorted(sums.items()):
        print(f"| `{name}` | {t[4]} x 1 {kind} | {startup} | {t[0]} / {t[1]} | "
              f"{ratio(t[0], t[1])} | {t[2] / t[3]:.2f}x | {t[5]} |")


def cases(traces, tmp):
    """(label, part, csv path, target per replica, warm-up) of every run."""
    out = []
    multi = [
        ("nasa_http_1995_jul", "web, 27.6 d"),
        ("servegen_language_m_large", "LLM API, 14 d"),
        ("alibaba_genai_sd_nov", "image generation, 15.3 d, sparse"),
    ]
    for name, kind in multi:
        header, rows = read(os.path.join(traces, name + ".csv"))
        target = peak(rows) / 25
        n = len(rows)
        head = rows[: n - WEEK]
        head_warm = "7d" if len(head) >= 14 * DAY else "2d"
        out.append((f"`{name}` ({kind})", "tune", write(tmp, name + "_head", header, head),
                    target, head_warm))
        out.append((f"`{name}` ({kind})", "held-out", os.path.join(traces, name + ".csv"),
                    target, f"{n - WEEK}m"))
        out.append((f"`{name}` ({kind})", "full", os.path.join(traces, name + ".csv"),
                    target, None))
    bundled = BUNDLED
    header, rows = read(bundled)
    target = peak(rows) / 25
    out.append(("bundled `llm-proxy-21d` (synthetic)", "tune",
                write(tmp, "bundled_head", header, rows[: len(rows) - WEEK]), target, "7d"))
    out.append(("bundled `llm-proxy-21d` (synthetic)", "held-out", bundled, target,
                f"{len(rows) - WEEK}m"))
    out.append(("bundled `llm-proxy-21d` (synthetic)", "full", bundled, target, None))
    header, rows = read(os.path.join(traces, "servegen_language_m_large.csv"))
    day = rows[2 * DAY: 3 * DAY]
    out.append(("`servegen_language_m_large`, day 3 (1 d)", "tune",
                write(tmp, "servegen_day3", header, day), peak(day) / 25, None))
    for name, kind, part in [
        ("servegen_multimodal_mm_image", "multimodal, 1 d", "held-out"),
        ("azure_llm_2023_code", "code, 1 h", "tune"),
        ("mooncake_conversation", "chat, 1 h", "held-out"),
    ]:
        path = os.path.join(traces, name + ".csv")
        _, rows = read(path)
        out.append((f"`{name}` ({kind})", part, path, peak(rows) / 25, None))
        out.append((f"`{name}` ({kind})", "full", path, peak(rows) / 25, None))
    return out


NUM = r"([0-9.]+)"


def parse(text):
    """The figures of one simulate summary."""
    r = {}
    m = re.search(r"^\s+prescale\s+(\d+)\s+" + NUM + r"\s+(\d+)", text, re.M)
    r["viol"], r["steps"] = int(m.group(1)), int(m.group(3))
    m = re.search(r"^\s+reactive\s+(\d+)\s+" + NUM + r"\s+(\d+)", text, re.M)
    r["rviol"], r["rsteps"] = int(m.group(1)), int(m.group(3))
    m = re.search(r"replica budget \(target x" + NUM + r"\): (\d+) violation steps", text)
    r["same"] = int(m.group(2)) if m else None
    m = re.search(r"^verdict: (.*)$", text, re.M)
    r["verdict"] = m.group(1).strip() if m else ""
    return r


def parse_frontier(text):
    points = []
    for line in text.splitlines():
        m = re.match(r"\s+(default|q[0-9.]+)\s+(\d+)\s+" + NUM + r"\s+" + NUM + r"x\s+(\d+) \(target", line)
        if m:
            points.append((m.group(1), int(m.group(2)), float(m.group(4)), int(m.group(5))))
    return points


def run(binary, path, target, warm, startup, extra, frontier):
    cmd = [binary, "simulate", "--input", path, "--target-per-replica", f"{target:.6f}",
           "--startup", startup, "--lead-time", startup, "--threads", "2"]
    if warm:
        cmd += ["--warmup", warm]
    if frontier is not None:
        cmd += ["--frontier"] + ([frontier] if frontier else [])
    cmd += extra
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stderr}")
    return p.stdout


def ratio(a, b):
    return f"{a / b:.2f}x" if b else "n/a"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--traces", required=True)
    ap.add_argument("--bin", default="target/release/prescale")
    ap.add_argument("--parts", default="tune,held-out")
    ap.add_argument("--startup", default="5m,10m")
    ap.add_argument("--only", default="")
    ap.add_argument("--frontier", nargs="?", const="", default=None)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("extra", nargs="*")
    a = ap.parse_args()
    parts = a.parts.split(",")
    if "slices" in parts:
        with tempfile.TemporaryDirectory() as tmp:
            todo = [c + (s,) for c in slices(a.traces, tmp) for s in a.startup.split(",")]
            with concurrent.futures.ThreadPoolExecutor(a.jobs) as pool:
                outs = list(pool.map(lambda c: run(a.bin, c[2], c[3], c[4], c[5], a.extra,
                                                   None), todo))
        slice_table(todo, outs)
        parts.remove("slices")
        if not parts:
            return
    with tempfile.TemporaryDirectory() as tmp:
        todo = [c for c in cases(a.traces, tmp) if c[1] in parts
                and (not a.only or any(o in c[0] for o in a.only.split(",")))]
        runs = [(c, s) for c in todo for s in a.startup.split(",")]
        with concurrent.futures.ThreadPoolExecutor(a.jobs) as pool:
            outs = list(pool.map(lambda cs: run(a.bin, cs[0][2], cs[0][3], cs[0][4], cs[1],
                                                a.extra, a.frontier), runs))
    if a.frontier is not None:
        print("| trace | part | start-up | point: cost, equal budget (prescale / HPA at that budget) |")
        print("|---|---|---|---|")
        for ((label, part, *_), startup), out in zip(runs, outs):
            cells = [f"{p}: {c:.2f}x, {ratio(v, s)} ({v} / {s})" for p, v, c, s in parse_frontier(out)]
            print(f"| {label} | {part} | {startup} | " + "; ".join(cells) + " |")
        return
    print("| trace | part | start-up | violation steps prescale / reactive | cost vs reactive "
          "| equal budget (HPA's violations at that budget) | verdict |")
    print("|---|---|---|---|---|---|---|")
    for ((label, part, *_), startup), out in zip(runs, outs):
        r = parse(out)
        eb = f"{ratio(r['viol'], r['same'])} ({r['same']})" if r["same"] is not None else "n/a"
        print(f"| {label} | {part} | {startup} | {r['viol']} / {r['rviol']} | "
              f"{r['steps'] / r['rsteps']:.2f}x | {eb} | {r['verdict']} |")


if __name__ == "__main__":
    main()
