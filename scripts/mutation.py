"""Mutation testing of app/ with mutmut: `make mutation [MODULE=app/prices]` (docs/mutation.md).

mutmut writes its mutants to ./mutants and reads [tool.mutmut] from ./pyproject.toml, so this
driver runs it in a scratch copy of the tree, .mutation/<module>/ (git-ignored), made fresh on
every run: a cached verdict from an earlier run would hide a test written since. MODULE picks what
gets mutated (mutmut's `only_mutate`); the whole app package is copied so that it imports as usual,
and `node` and the generated protobuf code come from the editable install, as in `make test`.

Which tests run is [tool.mutmut] in pyproject.toml: the fast in-process tests. For each mutant
mutmut runs only the tests that called the mutated function (recorded in one instrumented pass),
each mutant in a forked child of one warm process, --jobs of them at a time.

The driver refuses to run if a selected test file mentions subprocess, socket, asyncio or
multiprocessing: a test that starts processes or servers must be listed under --ignore there.

Hypothesis runs derandomized and without its example database, so a run is repeatable and a
mutant is not "killed" by an example another run happened to find.

Prints a score table (killed / total per module and per file) and every mutant that no test
killed, with file:line and its diff. The same report is saved as .mutation/<module>/report.txt.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import pathlib
import re
import shutil
import signal
import sys
import threading
import time
from collections import defaultdict

import tomlkit

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = "app"

# mutmut's status names (mutmut.stats.status_by_exit_code) that count as the mutant being caught.
CAUGHT = {"killed", "timeout", "segfault", "caught by type check"}
# Anything else is a survivor: "survived", "no tests" (no selected test calls the function),
# "suspicious", "not checked" (run interrupted). "skipped" (pragma: no mutate) is left out of the total.


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("module", nargs="?", default=PACKAGE,
                    help="path under app/ to mutate: a package dir or a .py file (default: app)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="mutants tested at once (default: cores)")
    ap.add_argument("--hang-after", type=float, default=150.0, metavar="S",
                    help="a mutant's worker running longer than S seconds gets SIGXCPU (counted as a timeout)")
    ap.add_argument("--functions", default="", metavar="F,G",
                    help="only the mutants of these functions (comma-separated names; methods by their own name): "
                         "for a re-run after a change to a few functions of a large module")
    ap.add_argument("--fail-under", type=float, default=None, metavar="PCT",
                    help="exit 1 if the score of MODULE is below PCT")
    return ap.parse_args()


def normalise_module(arg: str) -> str:
    rel = pathlib.PurePosixPath(arg.strip().rstrip("/"))
    if rel.is_absolute():
        rel = pathlib.PurePosixPath(os.path.relpath(rel, ROOT))
    if not (ROOT / rel).exists() and (ROOT / rel).with_suffix(".py").exists():
        rel = rel.with_suffix(".py")  # MODULE=app/store
    if rel.parts[:1] != (PACKAGE,) or ".." in rel.parts or not (ROOT / rel).exists():
        sys.exit(f"mutation: MODULE must be an existing path under {PACKAGE}/ (got {arg!r})")
    if (ROOT / rel).is_file() and rel.suffix != ".py":
        sys.exit(f"mutation: {arg!r} is not a Python file")
    return str(rel)


def make_work_dir(module: str) -> pathlib.Path:
    slug = module.removesuffix(".py").replace("/", ".")
    work = ROOT / ".mutation" / slug
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", ".pytest_cache")
    shutil.copytree(ROOT / PACKAGE, work / PACKAGE, ignore=ignore)
    shutil.copytree(ROOT / "tests", work / "tests", ignore=ignore)
    shutil.copytree(ROOT / "docs", work / "docs", ignore=ignore)  # read by tests/test_error_codes.py

    doc = tomlkit.parse((ROOT / "pyproject.toml").read_text())
    cfg = doc["tool"]["mutmut"]
    if module != PACKAGE:
        cfg["only_mutate"] = [module if module.endswith(".py") else module + "/*"]
    (work / "pyproject.toml").write_text(tomlkit.dumps(doc))
    return work


SPAWNS = re.compile(r"\b(subprocess|Popen|socket|asyncio|multiprocessing|os\.fork)\b")


def selected_test_files(work: pathlib.Path) -> list[str]:
    """The test files mutmut will run; refuses any that looks like it starts processes or servers."""
    args = tomlkit.parse((work / "pyproject.toml").read_text())["tool"]["mutmut"]["pytest_add_cli_args"]
    ignored = {a.removeprefix("--ignore=") for a in args if a.startswith("--ignore=")}
    files = sorted(str(p.relative_to(work)) for p in (work / "tests").rglob("test_*.py"))
    selected = [f for f in files if f not in ignored]
    spawning = [f for f in selected if SPAWNS.search((work / f).read_text())]
    if spawning:
        sys.exit("mutation: these test files mention subprocess/socket/asyncio, so they may start processes or "
                 "servers; list them under --ignore in [tool.mutmut] pytest_add_cli_args (pyproject.toml), or "
                 "move that code out of them: " + ", ".join(spawning))
    return selected


def use_repeatable_hypothesis() -> None:
    from hypothesis import settings

    settings.register_profile("mutation", derandomize=True, database=None, print_blob=False)
    settings.load_profile("mutation")


def hang_watchdog(limit_s: float, stop: threading.Event, poll_s: float = 5.0) -> None:
    """mutmut's own timeout did not fire for mutants that loop forever (a binary search that never narrows, a
    `while` whose step was mutated): the worker ran until killed by hand. Workers are the grandchildren of this
    process (driver -> multiprocessing forkserver -> one forked worker per mutant); one older than ``limit_s`` gets
    SIGXCPU, which mutmut records as a timeout (caught). Each kill is printed."""
    from node.procutil import children, start_ticks

    tick = os.sysconf("SC_CLK_TCK")
    while not stop.wait(poll_s):
        now = float(pathlib.Path("/proc/uptime").read_text().split()[0])
        for server in children(os.getpid()):
            for worker in children(server):
                started = start_ticks(worker)
                if started is not None and now - started / tick > limit_s:
                    print(f"\nmutation: worker {worker} ran over {limit_s:.0f} s (a mutant that never ends): SIGXCPU",
                          flush=True)
                    try:
                        os.kill(worker, signal.SIGXCPU)
                    except ProcessLookupError:
                        pass


def mutant_patterns(functions: str) -> list[str]:
    """mutmut's names for the mutants of ``functions``: ``pkg.mod.x_<fn>__mutmut_<n>`` for a function and
    ``pkg.mod.xǁClassǁ<fn>__mutmut_<n>`` for a method (fnmatch patterns, as `mutmut run NAMES` takes them)."""
    names = [f.strip() for f in functions.split(",") if f.strip()]
    return [p for f in names for p in (f"*.x_{f}__mutmut_*", f"*ǁ{f}__mutmut_*")]


def run_mutmut(jobs: int, hang_after_s: float, patterns: list[str]) -> None:
    from mutmut.__main__ import cli

    stop = threading.Event()
    threading.Thread(target=hang_watchdog, args=(hang_after_s, stop), daemon=True).start()

    try:
        cli.main(["run", "--max-children", str(jobs), *patterns], prog_name="mutmut", standalone_mode=False)
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    finally:
        stop.set()


def changed_line(source_lines: list[str], diff: str) -> int | None:
    """1-based line in the source file of the first line the mutant changes.

    mutmut diffs the function alone (re-indented for methods): find the function's lines in the
    file by their stripped text, then the first '-' line of the hunk inside it."""
    lines = diff.split("\n")
    hunk = next((i for i, ln in enumerate(lines) if ln.startswith("@@")), None)
    if hunk is None:
        return None
    orig = [ln[1:] for ln in lines[hunk + 1:] if ln[:1] in (" ", "-")]
    offset = 0
    for ln in lines[hunk + 1:]:
        if ln[:1] in ("-", "+"):
            break
        offset += 1
    want = [ln.strip() for ln in orig]
    stripped = [ln.strip() for ln in source_lines]
    for i in range(len(stripped) - len(want) + 1):
        if stripped[i:i + len(want)] == want:
            return i + 1 + offset
    return None


def group_of(path: str) -> str:
    parts = path.split("/")
    return "/".join(parts[:2]) if len(parts) > 2 else path


def report(module: str, elapsed_s: float, jobs: int, patterns: list[str]) -> tuple[list[str], float]:
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.stats import status_by_exit_code
    from mutmut.utils.file_utils import walk_mutatable_files

    per_file: dict[str, dict[str, int]] = {}
    survivors: list[tuple[str, int | None, str, str, str]] = []
    timeouts: list[tuple[str, int | None, str]] = []
    for path in sorted(walk_mutatable_files()):
        m = SourceFileMutationData(path=path)
        m.load()
        counts: dict[str, int] = defaultdict(int)
        source_lines = pathlib.Path(path).read_text().split("\n")
        for name, code in m.exit_code_by_key.items():
            if patterns and not any(fnmatch.fnmatch(name, p) for p in patterns):
                continue  # not selected by --functions: not run, not counted
            status = status_by_exit_code[code]
            counts[status] += 1
            if status in ("timeout", "segfault"):
                diff = get_diff_for_mutant(name, path=path)
                timeouts.append((str(path), changed_line(source_lines, diff), name))
            if status in CAUGHT or status == "skipped":
                continue
            try:
                diff = get_diff_for_mutant(name, path=path)
            except Exception as e:  # a report must not die on one unreadable mutant
                diff = f"(no diff: {e})"
            survivors.append((str(path), changed_line(source_lines, diff), name, status, diff))
        per_file[str(path)] = counts

    def row(label: str, counts: dict[str, int]) -> tuple[str, int, int, float]:
        total = sum(v for k, v in counts.items() if k != "skipped")
        caught = sum(counts[k] for k in CAUGHT)
        pct = 100.0 * caught / total if total else 100.0
        return label, caught, total, pct

    def fmt(label: str, counts: dict[str, int]) -> str:
        label, caught, total, pct = row(label, counts)
        pct_s = f"{pct:6.1f}%" if total else "     -"
        return (f"{label:<34} {caught:>6} / {total:<6} {pct_s}   survived {counts['survived']:>3}"
                f"  no-tests {counts['no tests']:>3}  timeout {counts['timeout']:>3}")

    groups: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    total_counts: dict[str, int] = defaultdict(int)
    for path, counts in per_file.items():
        for k, v in counts.items():
            groups[group_of(path)][k] += v
            total_counts[k] += v

    if patterns:
        module += " (functions: " + ", ".join(sorted({p.split("__mutmut_")[0].split("x_")[-1].split("ǁ")[-1]
                                                       for p in patterns})) + ")"
    out = [f"mutation score of {module} (mutmut, killed / total; {elapsed_s / 60:.1f} min with {jobs} jobs)", ""]
    out.append("per module")
    out += [fmt(g, c) for g, c in sorted(groups.items())]
    out.append(fmt("TOTAL " + module, total_counts))
    out += ["", "per file"]
    out += [fmt(p, c) for p, c in per_file.items() if sum(c.values())]
    if timeouts:
        out += ["", "timed out (counted as killed; a survivor that is merely slow would show up here):"]
        out += [f"  {path}:{line if line else '?'}  {name}" for path, line, name in sorted(timeouts, key=str)]
    out += ["", f"surviving mutants: {len(survivors)}"]
    for path, line, name, status, diff in sorted(survivors, key=lambda s: (s[0], s[1] or 0, s[2])):
        out += ["", f"{path}:{line if line else '?'}  {status}  {name}"]
        out += ["    " + ln for ln in diff.split("\n") if not ln.startswith(("---", "+++"))]
    out += ["", f"score {row(module, total_counts)[3]:.1f}% ({row(module, total_counts)[1]}"
            f" / {row(module, total_counts)[2]} killed), {len(survivors)} surviving"]
    return out, row(module, total_counts)[3]


def main() -> int:
    args = parse_args()
    module = normalise_module(args.module)
    work = make_work_dir(module)
    tests = selected_test_files(work)
    print(f"mutation: mutating {module} in {work.relative_to(ROOT)}/ with {args.jobs} jobs; tests: "
          + " ".join(t.removeprefix("tests/") for t in tests), flush=True)
    os.chdir(work)
    use_repeatable_hypothesis()
    t0 = time.monotonic()
    patterns = mutant_patterns(args.functions)
    run_mutmut(args.jobs, args.hang_after, patterns)
    elapsed = time.monotonic() - t0
    lines, score = report(module, elapsed, args.jobs, patterns)
    text = "\n".join(lines) + "\n"
    (work / "report.txt").write_text(text)
    sys.stdout.write("\n" + text)
    print(f"(report saved to {(work / 'report.txt').relative_to(ROOT)}; inspect mutants with "
          f"`cd {work.relative_to(ROOT)} && {ROOT / '.venv/bin/mutmut'} show NAME`)")
    if args.fail_under is not None and score < args.fail_under:
        print(f"mutation: score {score:.1f}% is below {args.fail_under}%")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
