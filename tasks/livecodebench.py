"""LiveCodeBench code generation (Jain et al., 2024, arXiv 2403.07974), scored as lcb_runner scores it.

Problems from LeetCode, AtCoder and Codeforces contests, each dated by its contest, so that a model can
be scored on problems published after its training cutoff. Two kinds: stdin problems (a program reads
the input and prints the answer) and functional problems (a LeetCode `class Solution` method called on
JSON arguments). The model's last fenced code block runs in evalkit's sandbox on the public, then the
private tests; a completion passes when every test passes. Expected outputs never enter the sandbox:
the parent compares plain data with lcb_runner's rules ("official") or with a 1e-6 float tolerance
("tolerant", which removes the known false negatives of exact decimal comparison).

Data: the hub's files (the default), a local copy (--data-dir), or six original problems in the hub's
row format shipped with evalkit (--data bundled), so that an offline machine can run the task end to end.

Options come from the environment (see `lcb_options`): EVALKIT_LCB_RELEASE, EVALKIT_LCB_SINCE,
EVALKIT_LCB_UNTIL, EVALKIT_LCB_MODEL_CUTOFF, EVALKIT_LCB_COMPARE, EVALKIT_LCB_TIMEOUT.
"""
from __future__ import annotations

import ast
import base64
import binascii
import hashlib
import importlib.resources
import io
import json
import logging
import math
import os
import pickle
import re
import zlib
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Sequence

from evalkit.errors import DataError, UserError
from evalkit.scoring.sandbox import Limits, Sandbox, decode_value, encode_value, get_sandbox
from evalkit.task import DataSpec, GenerationSettings, Prompt, Sample, SampleSet, Score, Task, register_task

log = logging.getLogger("evalkit")

HF_DATASET = "livecodebench/code_generation_lite"
# The dataset has no release commits to pin; "main" may change under us, and a warning says so. The
# sha256 of every file read is recorded all the same, so two runs on different data never look alike.
HF_REVISION = "main"
# Each release adds one file; release_vN is the first N of them (the hub loader's version_tag).
RELEASE_FILES = ("test.jsonl", "test2.jsonl", "test3.jsonl", "test4.jsonl", "test5.jsonl", "test6.jsonl")
RELEASES = {**{f"release_v{n}": RELEASE_FILES[:n] for n in range(1, len(RELEASE_FILES) + 1)},
            "release_latest": RELEASE_FILES}
DEFAULT_RELEASE = "release_latest"
BUNDLED_FILE = "livecodebench_sample.jsonl"
DEFAULT_TIMEOUT_S = 6.0  # lcb_runner's per-test limit
COMPARE_MODES = ("official", "tolerant")
TOLERANCE = 1e-6  # absolute and relative, in tolerant mode
SHOWN_CHARS = 200  # of got/expected in a failure's details
FIELDS = ("question_content", "platform", "question_id", "contest_date", "starter_code", "difficulty",
          "public_test_cases", "private_test_cases", "metadata")

FORMAT_WITH_STARTER_CODE = ("You will use the following starter code to write the solution to the problem and "
                            "enclose your code within delimiters.")
FORMAT_WITHOUT_STARTER_CODE = ("Read the inputs from stdin solve the problem and write the answer to stdout (do not "
                               "directly test on the sample inputs). Enclose your code within delimiters as follows. "
                               "Ensure that when the python program runs, it reads the inputs, runs the algorithm and "
                               "writes output to STDOUT.")
ANSWER_LINE = "### Answer: (use the provided format with backticks)\n\n"

# lcb_runner runs every program after these imports, so solutions that use heapq, math or typing's List
# without importing them pass there; they must pass here too. The order matters: `from builtins import *`
# restores the open() that `from io import *` shadowed, and the plain imports rebind `datetime` to the module.
_PRELUDE_MODULES = ("string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math", "random",
                    "statistics", "itertools", "functools", "operator", "io", "sys", "json")
PRELUDE = ("".join(f"from {name} import *\n" for name in (*_PRELUDE_MODULES, "builtins", "typing"))
           + "".join(f"import {name}\n" for name in _PRELUDE_MODULES)
           + "sys.setrecursionlimit(50000)\n")

# A stdin program runs as lcb_runner runs it: in a module that is not __main__ (only a trailing main
# guard is unwrapped), and a SystemExit ends the program without failing it, whatever its code. The
# module is registered so that dataclasses and pickle find it; dont_inherit keeps this driver's
# compiler flags off the program.
_STDIN_DRIVER = """\
import sys, types
solution = sys.modules["solution"] = types.ModuleType("solution")
try:
    exec(compile({source!r}, "<solution>", "exec", dont_inherit=True), solution.__dict__)
except SystemExit:
    pass
"""

_LOCAL_FIX = "pass --data-dir DIR with livecodebench/*.jsonl"
_INTEGER = re.compile(r"[+-]?[0-9]+")


# --- options -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LcbOptions:
    """Which problems a run takes and how it judges them. `since`/`until` are inclusive whole days;
    problems dated on or before `model_cutoff` are marked contaminated."""

    release: str = DEFAULT_RELEASE
    since: date | None = None
    until: date | None = None
    model_cutoff: date | None = None
    compare: str = "official"
    timeout_s: float = DEFAULT_TIMEOUT_S


def lcb_options() -> LcbOptions:
    """The options as the environment sets them (the command line's --since/--until/--model-cutoff
    land here too)."""
    release = os.environ.get("EVALKIT_LCB_RELEASE") or DEFAULT_RELEASE
    if release not in RELEASES:
        raise UserError(f"EVALKIT_LCB_RELEASE={release!r} is not a LiveCodeBench release; use one of {', '.join(RELEASES)}")
    compare = os.environ.get("EVALKIT_LCB_COMPARE") or "official"
    if compare not in COMPARE_MODES:
        raise UserError(f"EVALKIT_LCB_COMPARE={compare!r}: use official or tolerant")
    timeout = os.environ.get("EVALKIT_LCB_TIMEOUT") or str(DEFAULT_TIMEOUT_S)
    try:
        timeout_s = float(timeout)
    except ValueError:
        timeout_s = math.nan
    if not 0 < timeout_s < math.inf:
        raise UserError(f"EVALKIT_LCB_TIMEOUT={timeout!r}: give the per-test time limit in seconds, e.g. 6")
    options = LcbOptions(release, _env_date("EVALKIT_LCB_SINCE"), _env_date("EVALKIT_LCB_UNTIL"),
                         _env_date("EVALKIT_LCB_MODEL_CUTOFF"), compare, timeout_s)
    if options.since and options.until and options.since > options.until:
        raise UserError(f"the LiveCodeBench window is empty: since {options.since} is after until {options.until}")
    return options


def _env_date(name: str) -> date | None:
    value = os.environ.get(name)
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UserError(f"{name}={value!r}: give a day as YYYY-MM-DD") from None


# --- data --------------------------------------------------------------------------------------


class _Test(NamedTuple):
    input: str
    output: str
    kind: str  # public | private


# Decoded tests, keyed by (question_id, sha256 of the row's test fields). Private tests run to megabytes
# per problem on the real data, and a run writes k records per problem: carried in Sample.metadata they
# would bloat samples.jsonl k-fold and be pickled to a scoring worker with every completion. So the
# loader decodes them once into this per-process cache (forked scoring workers inherit it), the sample
# carries only the key and where the row came from, and a fresh process (`evalkit rescore`) reloads
# that file once. The price: the run's tests stay in memory, and a rescore needs the same data file,
# which the digest checks.
_TESTS: dict[tuple[str, str], tuple[_Test, ...]] = {}


class _NoGlobals(pickle.Unpickler):
    """Unpickles only what needs no lookup by name: str, bytes, numbers, lists, dicts, tuples. Any
    reference to a callable (os.system, builtins.eval) is refused before it is resolved."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def load_samples(spec: DataSpec) -> SampleSet:
    options = lcb_options()
    if spec.kind == "local":
        files, source = _local_files(spec.path, options.release)
    elif spec.kind == "hf":
        files, source = _hub_files(options.release)
    elif spec.kind == "bundled":
        files, source = _bundled_files()
    else:
        raise DataError(f"LiveCodeBench cannot read data of kind {spec.kind!r}; use local, hf or bundled")
    digests: dict[str, str] = {}
    samples: dict[str, Sample] = {}
    where_seen: dict[str, str] = {}
    for label, path, data_ref in files:
        for where, record in _rows(path, label, digests):
            sample = _to_sample(record, where, data_ref, options)
            if sample is None:
                continue
            if sample.id in samples:
                raise DataError(f"{where}: a second row for {sample.id} (the first is at {where_seen[sample.id]}); "
                                f"each question_id may appear once")
            samples[sample.id], where_seen[sample.id] = sample, where
    source = {**source, "files": digests, "release": options.release,
              "since": _iso(options.since), "until": _iso(options.until), "model_cutoff": _iso(options.model_cutoff),
              "compare": options.compare, "timeout_s": options.timeout_s}
    if spec.kind == "bundled":
        source["sha256"] = digests[BUNDLED_FILE]  # where every task's bundled source records its file's digest
    if not samples:
        raise DataError(f"no LiveCodeBench problems in {source}; check the files and the date window")
    return SampleSet(samples=list(samples.values()), source=source)


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


def _local_files(data_dir: Path | None, release: str) -> tuple[list[tuple[str, Path, dict[str, Any]]], dict[str, Any]]:
    """Every DIR/livecodebench/*.jsonl but solution files; of the hub's own files (test.jsonl,
    test2.jsonl, ...) only those of the release, so that a local copy of the hub gives the same problems."""
    if data_dir is None:
        raise DataError(f"local LiveCodeBench data needs a directory: {_LOCAL_FIX}")
    root = Path(data_dir).expanduser().resolve()
    paths = [path for path in sorted((root / "livecodebench").glob("*.jsonl"))
             if "_solutions" not in path.name and (path.name not in RELEASE_FILES or path.name in RELEASES[release])]
    if not paths:
        raise DataError(f"no problem files in {root / 'livecodebench'}: {_LOCAL_FIX}")
    files = [(path.relative_to(root).as_posix(), path, {"kind": "local", "file": str(path)}) for path in paths]
    return files, {"kind": "local", "path": str(root)}


def _hub_files(release: str) -> tuple[list[tuple[str, Path, dict[str, Any]]], dict[str, Any]]:
    # The files themselves, not datasets.load_dataset: the dataset is a loading script, which
    # datasets >= 4 no longer runs (LiveCodeBench issue #108).
    files = [(name, _hub_file(name), {"kind": "hf", "file": name, "revision": HF_REVISION})
             for name in RELEASES[release]]
    log.warning("%s is loaded at revision %r, not a pinned commit: its rows may change upstream (the sha256 of "
                "each file is recorded)", HF_DATASET, HF_REVISION)
    return files, {"kind": "hf", "dataset": HF_DATASET, "revision": HF_REVISION}


def _bundled_files() -> tuple[list[tuple[str, Path, dict[str, Any]]], dict[str, Any]]:
    data_ref = {"kind": "bundled", "file": BUNDLED_FILE}
    return [(BUNDLED_FILE, _bundled_path(), data_ref)], dict(data_ref)


def _bundled_path() -> Path:
    return Path(str(importlib.resources.files("evalkit.tasks").joinpath("data", BUNDLED_FILE)))


def _hub_file(name: str) -> Path:
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(HF_DATASET, name, repo_type="dataset", revision=HF_REVISION))
    except Exception as exc:  # offline, missing package, auth, a file gone upstream: all leave the same fix
        raise DataError(f"cannot load {HF_DATASET} file {name} from the Hugging Face hub "
                        f"({type(exc).__name__}: {exc}); {_LOCAL_FIX}, or --data bundled") from exc


def _rows(path: Path, label: str, digests: dict[str, str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The JSON rows of one file, hashing it on the way (the real files are gigabytes: read once)."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            # Binary lines split on b"\n" only, not on the U+2028 that JSON may carry unescaped.
            for line_no, line in enumerate(handle, 1):
                digest.update(line)
                if not line.strip():
                    continue
                where = f"{path}:{line_no}"
                try:
                    record = json.loads(line)
                except UnicodeDecodeError as exc:
                    raise DataError(f"{where}: not UTF-8 text (bad byte at offset {exc.start})") from exc
                except json.JSONDecodeError as exc:
                    raise DataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
                if not isinstance(record, dict):
                    raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
                yield where, record
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.strerror or exc}); {_LOCAL_FIX}") from exc
    digests[label] = digest.hexdigest()


def _to_sample(record: dict[str, Any], where: str, data_ref: dict[str, Any], options: LcbOptions) -> Sample | None:
    """The one place where a row becomes a Sample (None when outside the date window); its decoded
    tests go into the cache."""
    missing = [name for name in FIELDS if name not in record]
    if missing:
        raise DataError(f"{where}: missing field(s) {', '.join(missing)}")
    wrong = [name for name in FIELDS if not isinstance(record[name], str)]
    if wrong:
        raise DataError(f"{where}: field(s) {', '.join(wrong)} must be strings, as in {HF_DATASET}")
    question_id = record["question_id"]
    try:
        contest_date = datetime.fromisoformat(record["contest_date"])
    except ValueError:
        raise DataError(f"{where}: contest_date {record['contest_date']!r:.40} of {question_id} is not an ISO date") from None
    # Whole days: until 2025-01-31 keeps a contest at 2025-01-31T19:30 (lcb_runner's midnight bound drops it).
    day = contest_date.date()
    if (options.since and day < options.since) or (options.until and day > options.until):
        return None
    digest, tests, func_name = _decode_row(record, where)
    _TESTS[(question_id, digest)] = tests
    contaminated = "unknown" if options.model_cutoff is None else ("yes" if day <= options.model_cutoff else "no")
    metadata = {
        "question_id": question_id,
        "platform": record["platform"],
        "difficulty": record["difficulty"],
        "contest_date": record["contest_date"],
        "contaminated": contaminated,
        "testtype": "functional" if func_name else "stdin",
        "func_name": func_name,
        "data": data_ref,
        "compare": options.compare,
        "timeout_s": options.timeout_s,
    }
    return Sample(id=question_id, input={"question": record["question_content"], "starter_code": record["starter_code"]},
                  target=digest, metadata=metadata)


def _decode_row(record: dict[str, Any], where: str) -> tuple[str, tuple[_Test, ...], str | None]:
    """The digest of a row's test fields, its tests (public first, as lcb_runner orders them) and its
    function name (None for stdin problems)."""
    question_id = record["question_id"]
    digest = hashlib.sha256(json.dumps(
        [record["public_test_cases"], record["private_test_cases"], record["metadata"]]).encode()).hexdigest()
    try:
        extra = json.loads(record["metadata"])
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: metadata of {question_id} is not valid JSON ({exc.msg})") from exc
    func_name = extra.get("func_name") if isinstance(extra, dict) else None
    if func_name is not None and not (isinstance(func_name, str) and func_name.isidentifier()):
        raise DataError(f"{where}: metadata.func_name of {question_id} must be a Python name, got {func_name!r:.60}")
    public = _test_list(_json_tests(record["public_test_cases"], where, question_id, "public"), where, question_id, "public")
    private = _test_list(_private_tests(record["private_test_cases"], where, question_id), where, question_id, "private")
    tests = public + private
    if not tests:
        raise DataError(f"{where}: {question_id} has no tests")
    # lcb_runner calls a function exactly when metadata names one; tests of the other type mean a broken row.
    expected_type = "functional" if func_name else "stdin"
    strays = {test_type for _, test_type in tests if test_type != expected_type}
    if strays:
        raise DataError(f"{where}: {question_id} has {', '.join(sorted(strays))} tests but is a {expected_type} problem "
                        f"(metadata.func_name {'set' if func_name else 'absent'})")
    return digest, tuple(test for test, _ in tests), func_name


def _json_tests(text: str, where: str, question_id: str, kind: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: {kind}_test_cases of {question_id} is not valid JSON ({exc.msg})") from exc


def _private_tests(text: str, where: str, question_id: str) -> Any:
    """Plain JSON, or base64 -> zlib -> pickle -> JSON text (the larger rows of the hub's files)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        payload = _NoGlobals(io.BytesIO(zlib.decompress(base64.b64decode(text, validate=True)))).load()
    except pickle.UnpicklingError as exc:
        if "refusing to unpickle" in str(exc):
            raise DataError(f"{where}: private_test_cases of {question_id}: {exc}; the pickle names code to run, so "
                            f"the data file was tampered with or is not LiveCodeBench's") from exc
        raise DataError(f"{where}: private_test_cases of {question_id} is not a valid pickle ({exc})") from exc
    except (binascii.Error, zlib.error, ValueError, EOFError, TypeError) as exc:
        raise DataError(f"{where}: private_test_cases of {question_id} is neither JSON nor base64/zlib/pickle "
                        f"({type(exc).__name__}: {exc})") from exc
    if isinstance(payload, bytes):
        payload = payload.decode("utf-8", errors="replace")
    if not isinstance(payload, str):
        raise DataError(f"{where}: private_test_cases of {question_id} unpickles to {type(payload).__name__}, "
                        f"expected the JSON text of the tests")
    return _json_tests(payload, where, question_id, "private")


def _test_list(tests: Any, where: str, question_id: str, kind: str) -> list[tuple[_Test, str]]:
    if not isinstance(tests, list):
        raise DataError(f"{where}: {kind}_test_cases of {question_id} must be a list, got {type(tests).__name__}")
    checked = []
    for i, test in enumerate(tests):
        if not (isinstance(test, dict) and isinstance(test.get("input"), str) and isinstance(test.get("output"), str)
                and test.get("testtype") in ("stdin", "functional")):
            raise DataError(f"{where}: {kind} test {i} of {question_id} needs string input and output and "
                            f"testtype stdin or functional, got {str(test)[:80]}")
        checked.append((_Test(test["input"], test["output"], kind), test["testtype"]))
    return checked


def _tests_for(sample: Sample) -> tuple[_Test, ...]:
    key = (sample.metadata["question_id"], sample.target)
    if key not in _TESTS:
        _reload(sample.metadata["data"])
    if key not in _TESTS:
        raise DataError(f"the tests of {key[0]} (digest {key[1][:16]}) are not in {sample.metadata['data']} any more: "
                        f"the data changed since the run; score it with the data it was run on")
    return _TESTS[key]


def _reload(data_ref: dict[str, Any]) -> None:
    """Decode every row of the file a sample came from into the cache (a rescore in a fresh process)."""
    for where, record in _rows(_data_path(data_ref), data_ref["file"], {}):
        if isinstance(record.get("question_id"), str):
            digest, tests, _ = _decode_row(record, where)
            _TESTS[(record["question_id"], digest)] = tests


def _data_path(data_ref: dict[str, Any]) -> Path:
    if data_ref["kind"] == "local":
        return Path(data_ref["file"])
    if data_ref["kind"] == "bundled":
        return _bundled_path()
    return _hub_file(data_ref["file"])


# --- prompt ------------------------------------------------------------------------------------


def build_prompt(sample: Sample, sample_set: SampleSet) -> Prompt:
    """lcb_runner's generic question template, as one user message."""
    question, starter_code = sample.input["question"], sample.input["starter_code"]
    text = f"### Question:\n{question}\n\n"
    if starter_code:
        text += f"### Format: {FORMAT_WITH_STARTER_CODE}\n```python\n{starter_code}\n```\n\n"
    else:
        text += f"### Format: {FORMAT_WITHOUT_STARTER_CODE}\n```python\n# YOUR CODE HERE\n```\n\n"
    return Prompt(messages=({"role": "user", "content": text + ANSWER_LINE},))


# --- scoring -----------------------------------------------------------------------------------


def extract_program(completion: str) -> str:
    """The text between the last two lines that hold a ``` fence (lcb_runner's rule); "" without two."""
    lines = completion.split("\n")
    fences = [i for i, line in enumerate(lines) if "```" in line]
    if len(fences) < 2:
        return ""
    return "\n".join(lines[fences[-2] + 1 : fences[-1]])


def unwrap_main_guard(program: str) -> str:
    """A trailing `if __name__ == '__main__':` block replaced by its body, so that it runs."""
    try:
        tree = ast.parse(program)
        last = tree.body[-1] if tree.body else None
        if isinstance(last, ast.If) and ast.unparse(last.test) == "__name__ == '__main__'":
            return ast.unparse(ast.Module(body=tree.body[:-1] + last.body, type_ignores=[]))
    except (SyntaxError, ValueError, RecursionError):
        pass  # the program fails when it runs, with its own error
    return program


def stdout_matches(got: str, expected: str, compare: str) -> bool:
    """lcb_runner's rule: equal numbers of lines after stripping the whole output and each line; a line
    that differs must hold the same numbers, token by token. Official: exactly equal Decimals
    (0.3333333333 is not 0.333333333). Tolerant: any token equal as text, or numbers within 1e-6."""
    got_lines, expected_lines = _stripped_lines(got), _stripped_lines(expected)
    if len(got_lines) != len(expected_lines):
        return False
    return all(g == e or _tokens_match(g.split(), e.split(), compare) for g, e in zip(got_lines, expected_lines))


def _stripped_lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().split("\n")]


def _tokens_match(got: list[str], expected: list[str], compare: str) -> bool:
    if compare == "official":
        try:
            return [Decimal(token) for token in got] == [Decimal(token) for token in expected]
        except InvalidOperation:  # not a number, or a signalling NaN compared
            return False
    return len(got) == len(expected) and all(g == e or _close_tokens(g, e) for g, e in zip(got, expected))


def _close_tokens(got: str, expected: str) -> bool:
    try:
        got_number, expected_number = Decimal(got), Decimal(expected)
    except InvalidOperation:
        return False
    if _INTEGER.fullmatch(got) and _INTEGER.fullmatch(expected):
        return got_number == expected_number  # floats would call 10**17 and 10**17 + 1 equal
    return math.isclose(float(got_number), float(expected_number), rel_tol=TOLERANCE, abs_tol=TOLERANCE)


def value_matches(got: Any, expected: Any, compare: str) -> bool:
    """lcb_runner's rule for a function's result: a returned tuple counts as a list, then `==`.
    Tolerant: floats anywhere inside within 1e-6."""
    if isinstance(got, tuple):
        got = list(got)
    return got == expected if compare == "official" else _close_values(got, expected)


def _close_values(got: Any, expected: Any) -> bool:
    if _is_number(got) and _is_number(expected) and (isinstance(got, float) or isinstance(expected, float)):
        try:
            return math.isclose(got, expected, rel_tol=TOLERANCE, abs_tol=TOLERANCE)
        except OverflowError:  # an int beyond float range: only exact equality can hold
            return got == expected
    if isinstance(got, (list, tuple)) and type(got) is type(expected):
        return len(got) == len(expected) and all(_close_values(g, e) for g, e in zip(got, expected))
    if isinstance(got, dict) and isinstance(expected, dict):
        return got.keys() == expected.keys() and all(_close_values(got[key], expected[key]) for key in got)
    return got == expected


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Verdict(NamedTuple):
    outcome: str  # passed, or why the first failing test failed
    failed: int | None = None
    got: str = ""
    error: str = ""


def score(sample: Sample, output: str) -> Score:
    metadata = sample.metadata
    details: dict[str, Any] = {"compare": metadata["compare"], "timeout_s": metadata["timeout_s"]}
    program = extract_program(output)
    if not program.strip():
        return Score(0.0, None, "no_code", details)
    tests = _tests_for(sample)
    sandbox = get_sandbox()
    if metadata["testtype"] == "functional":
        verdict = _run_functional(sandbox, program, sample.id, metadata["func_name"], tests, metadata["compare"],
                                  metadata["timeout_s"])
    else:
        verdict = _run_stdin(sandbox, program, tests, metadata["compare"], metadata["timeout_s"])
    details.update(isolation=sandbox.isolation, n_tests=len(tests))
    if verdict.failed is not None:
        failed = tests[verdict.failed]
        details.update(failed_test=verdict.failed, failed_test_kind=failed.kind, got=_shown(verdict.got),
                       expected=_shown(failed.output), error=_shown(verdict.error))
    return Score(float(verdict.outcome == "passed"), program, verdict.outcome, details)


def _shown(text: str) -> str:
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}...({len(text) - SHOWN_CHARS} more chars)"


def _run_stdin(sandbox: Sandbox, program: str, tests: Sequence[_Test], compare: str, timeout_s: float) -> _Verdict:
    """One sandboxed run per test, stopping at the first failure."""
    runnable = _STDIN_DRIVER.format(source=PRELUDE + unwrap_main_guard(program))
    for index, test in enumerate(tests):
        expected_bytes = len(test.output.encode())
        # The cap must not fail a correct answer that is merely large.
        limits = Limits(wall_seconds=timeout_s, output_bytes=max(Limits.output_bytes, 2 * expected_bytes))
        result = sandbox.run(runnable, stdin=test.input.encode(), limits=limits)
        got = result.stdout.decode("utf-8", errors="replace")
        if result.outcome != "ok":
            return _Verdict(_failure(result.outcome), index, got, result.stderr[-SHOWN_CHARS:] or result.detail)
        if not stdout_matches(got, test.output, compare):
            return _Verdict("wrong_answer", index, got)
    return _Verdict("passed")


def _run_functional(sandbox: Sandbox, program: str, question_id: str, func_name: str, tests: Sequence[_Test],
                    compare: str, timeout_s: float) -> _Verdict:
    """All calls in one sandboxed process, each under its own limit; results compared in order."""
    calls, expected = [], []
    for index, test in enumerate(tests):
        try:
            # One JSON value per line is one argument.
            calls.append(encode_value([json.loads(line) for line in test.input.split("\n")]))
            expected.append(json.loads(test.output))
        except json.JSONDecodeError as exc:
            raise DataError(f"{test.kind} test {index} of {question_id} is not JSON, one value per line "
                            f"({exc.msg}); fix the data file") from exc
    total_expected = sum(len(test.output) for test in tests)
    limits = Limits(wall_seconds=(len(tests) + 1) * (timeout_s + 1),
                    output_bytes=max(Limits.output_bytes, 2 * total_expected + 2**20))
    # lcb_runner's test for LeetCode: a Solution class whose method is called, else a plain function.
    class_name = "Solution" if "class Solution" in program else None
    # Defined as lcb_runner defines it, in a module that is not __main__: a model's demo code under a
    # main guard (which may read stdin) must not run.
    results = sandbox.call(PRELUDE + "__name__ = 'solution'\n" + program, func_name, calls, limits=limits,
                           per_call_seconds=timeout_s, class_name=class_name)
    if len(results) != len(calls):
        return _Verdict("sandbox_error", 0, error=f"{len(results)} results for {len(calls)} calls")
    for index, (result, wanted) in enumerate(zip(results, expected)):
        if result.outcome != "ok":
            return _Verdict(_failure(result.outcome), index, error=result.error)
        try:
            got = decode_value(result.value)
        except ValueError as exc:
            return _Verdict("sandbox_error", index, str(result.value), f"malformed result: {exc}")
        if not value_matches(got, wanted, compare):
            return _Verdict("wrong_answer", index, str(result.value))
    return _Verdict("passed")


def _failure(outcome: str) -> str:
    known = ("runtime_error", "timeout", "memory_limit", "crashed", "output_limit", "sandbox_error")
    return outcome if outcome in known else "sandbox_error"  # e.g. not_run before any call failed


LIVECODEBENCH = register_task(
    Task(
        name="livecodebench",
        description="LiveCodeBench code generation (stdin and LeetCode problems) run in the sandbox, pass@1/pass@5",
        load_samples=load_samples,
        build_prompt=build_prompt,
        request_kind="generate",
        scorer=score,
        metrics=("pass@1", "pass@5"),
        generation=GenerationSettings(temperature=0.2, top_p=0.95, max_tokens=2000, samples=10),
        breakdown_keys=("difficulty", "platform", "contaminated"),
        parallel_scoring=True,
        benchmark="LiveCodeBench",
        chain_of_thought=True,
    )
)
