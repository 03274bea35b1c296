#!/usr/bin/env python3
"""joulebench training logs read by the peer: the `mlperf-logging` package.

  mlperf_check.py check [--ruleset R] [--rules FILE] LOG...
      Each MLPerf Training log must parse with the package's parser for the
      ruleset and pass, with the package's ComplianceChecker:
        1. the ruleset's common rules (training_R/common.yaml, unmodified:
           submission keys, cache_clear, init/run start and stop in order,
           run_stop with a status, blocks/epochs/evals, eval_accuracy,
           train_samples, eval_samples);
        2. our benchmark's rules (bench/training/rules/<benchmark>.yaml: the
           hyperparameter keys, the fixed split, the 97% target, status success).
      MLPerf's division files (open_common.yaml / closed_common.yaml), which
      common.yaml queues, accept only MLPerf's own benchmark names and would
      then load a benchmark file from the package; for ours, step 2 takes their
      place. The two steps use separate checkers, so neither can silence the
      other's findings (the package lets a later file override an earlier
      one's messages for the same key).

  mlperf_check.py rulesets
      Prints the MLPerf Training rulesets the installed package ships
      (its compliance_checker/training_<version> folders), oldest first.

  mlperf_check.py summarize [--ruleset R] [--json] DIR
      Reads DIR as an MLPerf benchmark folder (result_N.txt and, when present,
      power/result_N/node_*.txt + sw_*.txt) with the package's result
      summarizer functions: time to train from run_start/run_stop, energy with
      its power integration, and its olympic average. A log that fails `check`
      counts as not converged, as the summarizer counts a failed compliance check.

--ruleset R is a version (5.1.0, 6.1.0, ...) or `newest` (the default): the
newest training ruleset the installed package ships. `joulebench train
--ruleset R` writes the keys ruleset R requires (default: the newest it knows).

Exit status: 0 all good; 1 a check failed; 2 usage or the package is missing.
"""

import argparse
import glob
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_RULESET = "newest"


def _package():
    try:
        from mlperf_logging.compliance_checker import mlp_compliance, mlp_parser
        from mlperf_logging.result_summarizer import result_summarizer
    except ImportError as e:
        print(f"mlperf-logging is not installed ({e}); pip install mlperf-logging", file=sys.stderr)
        sys.exit(2)
    return mlp_compliance, mlp_parser, result_summarizer


def installed_rulesets():
    """The training rulesets the installed package ships, oldest first."""
    mlp_compliance, _, _ = _package()
    package_dir = os.path.dirname(os.path.abspath(mlp_compliance.__file__))
    found = []
    for name in os.listdir(package_dir):
        version = name[len("training_"):]
        parts = version.split(".")
        if (name.startswith("training_") and all(p.isdigit() for p in parts)
                and os.path.isfile(os.path.join(package_dir, name, "common.yaml"))):
            found.append((tuple(int(p) for p in parts), version))
    return [v for _, v in sorted(found)]


def resolve_ruleset(ruleset):
    if ruleset != "newest":
        return ruleset
    known = installed_rulesets()
    if not known:
        print("the installed mlperf-logging ships no training_<version> rules", file=sys.stderr)
        sys.exit(2)
    return known[-1]


def _messages(checker):
    return list(checker.warnings.values()), list(checker.overwritable.values()) + list(checker.not_overwritable)


def check_log(path, ruleset, rules_file=None):
    """(ok, problems) for one log."""
    mlp_compliance, mlp_parser, _ = _package()
    loglines, errors = mlp_parser.parse_file(path, ruleset=ruleset)
    problems = [f"parse error: {line!r}: {err}" for line, err in errors]
    if not loglines:
        problems.append("no :::MLLOG lines")
        return False, problems
    benchmark = next((l.value["value"] for l in loglines if l.key == "submission_benchmark"), None)
    if rules_file is None:
        rules_file = os.path.join(HERE, "rules", f"{benchmark}.yaml")
    if not os.path.isfile(rules_file):
        problems.append(f"no rules file for benchmark {benchmark!r} ({rules_file})")
        return False, problems

    package_dir = os.path.dirname(os.path.abspath(mlp_compliance.__file__))
    common = os.path.join(package_dir, f"training_{ruleset}", "common.yaml")
    steps = [("MLPerf common rules " + os.path.relpath(common, package_dir), common),
             ("benchmark rules " + os.path.relpath(rules_file), rules_file)]
    for label, config in steps:
        checker = mlp_compliance.make_checker("training", ruleset, quiet=False, werror=False)
        del mlp_compliance.enqueued_configs[:]
        checker.configured_checks(loglines, config)
        queued = list(mlp_compliance.enqueued_configs)
        del mlp_compliance.enqueued_configs[:]
        for q in queued:
            if os.path.basename(q) not in ("open_common.yaml", "closed_common.yaml"):
                problems.append(f"{label}: unexpected follow-up rules file {q}")
        warnings, errors = _messages(checker)
        problems += [f"{label}: {m}" for m in errors]
        for w in warnings:
            print(f"warning: {path}: {label}: {w}", file=sys.stderr)
    return not problems, problems


def summarize(folder, ruleset):
    _, mlp_parser, rs = _package()
    result_files = sorted(glob.glob(os.path.join(folder, "result_*.txt")),
                          key=lambda p: int(os.path.basename(p)[len("result_"):-len(".txt")]))
    if not result_files:
        raise SystemExit(f"{folder}: no result_*.txt")
    has_power = rs._has_power(folder)
    runs, scores, energies, dropped = [], [], [], 0
    for f in result_files:
        ok, problems = check_log(f, ruleset)
        loglines, _ = mlp_parser.parse_file(f, ruleset=ruleset)
        start, stop = rs._query_run_start_stop(loglines)
        ttt_ms = stop - start
        run = {"file": os.path.basename(f), "time_to_train_ms": ttt_ms, "compliant": ok}
        if has_power:
            run["energy_j"] = rs._compute_total_power(folder, f, ttt_ms, ruleset)
        runs.append(run)
        if ok:
            scores.append(ttt_ms / 60 / 1000)
            energies.append((ttt_ms, run.get("energy_j")))
        else:
            dropped += 1
            run["problems"] = problems
    out = {"folder": folder, "ruleset": ruleset, "runs": runs, "dropped": dropped}
    max_dropped = 1
    if dropped <= max_dropped and scores:
        minutes = rs._compute_olympic_average(list(scores), dropped, max_dropped)
        out["olympic_time_to_train_min"] = minutes
        out["olympic_time_to_train_s"] = None if minutes is None else minutes * 60
        if has_power and all(e is not None for _, e in energies):
            times = [t for t, _ in energies]
            index = [i for i, _ in sorted(enumerate(times), key=lambda x: x[1])]
            out["olympic_energy_j"] = rs._index_olympic_average(
                [e for _, e in energies], index, dropped, max_dropped)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("rulesets")
    c = sub.add_parser("check")
    c.add_argument("--ruleset", default=DEFAULT_RULESET)
    c.add_argument("--rules", default=None, help="benchmark rules file (default: rules/<submission_benchmark>.yaml)")
    c.add_argument("logs", nargs="+")
    s = sub.add_parser("summarize")
    s.add_argument("--ruleset", default=DEFAULT_RULESET)
    s.add_argument("--json", action="store_true")
    s.add_argument("folder")
    args = parser.parse_args()

    if args.cmd == "rulesets":
        print("\n".join(installed_rulesets()))
        return
    args.ruleset = resolve_ruleset(args.ruleset)

    if args.cmd == "check":
        print(f"ruleset {args.ruleset}")
        failed = 0
        for log in args.logs:
            ok, problems = check_log(log, args.ruleset, args.rules)
            print(f"{log}: {'PASS' if ok else 'FAIL'}")
            for p in problems:
                print("  " + p.replace("\n", "\n  "))
            failed += not ok
        sys.exit(1 if failed else 0)
    out = summarize(args.folder, args.ruleset)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for r in out["runs"]:
            energy = f", {r['energy_j']:.3f} J" if "energy_j" in r else ""
            print(f"{r['file']}: {r['time_to_train_ms'] / 1000:.3f} s{energy}"
                  f"{'' if r['compliant'] else ' (not compliant: dropped)'}")
        if out.get("olympic_time_to_train_s") is not None:
            print(f"time to train (olympic): {out['olympic_time_to_train_s']:.3f} s")
        else:
            print("time to train (olympic): none (MLPerf's average needs at least 3 runs, "
                  "at most one of them not converged)")
        if out.get("olympic_energy_j") is not None:
            print(f"energy to train (olympic): {out['olympic_energy_j']:.3f} J")
    # A folder is fine when at most one run is dropped (MLPerf's allowance);
    # fewer than 3 runs just give no olympic average.
    sys.exit(0 if out["dropped"] <= 1 and out["dropped"] < len(out["runs"]) else 1)


if __name__ == "__main__":
    main()
