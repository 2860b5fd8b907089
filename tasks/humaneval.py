"""HumanEval (Chen et al., 2021) and HumanEval+ (Liu et al., 2023, EvalPlus): write a Python function
from its signature and docstring.

Tasks:

- `humaneval`, `humaneval_plus`: the classic completion protocol for base models. The prompt is the
  problem's code (imports, signature, docstring) and the model continues it; generation stops at the
  first top-level `def`, `class`, `if __name__`, `print(` or comment, as in human-eval.
- `humaneval_chat`, `humaneval_plus_chat`: the same problems for chat models, asked to answer with
  the whole function in a ```python block.
- `humaneval_official`: human-eval's own check (prompt + completion + the test's asserts +
  `check(entry_point)`), passed iff the program exits 0. Its numbers match human-eval's, and it is
  forgeable the same way: a completion that calls `sys.exit(0)` passes.

The other four grade on plain data ("secure" mode, ../shared/design/code-scoring.md): the candidate
function is called in the sandbox on HumanEval+'s `base_input` (the inputs of the original tests)
and, for the _plus tasks, on `plus_input` too; only the return values come back, as tagged JSON, and
this process compares them with the outputs of the canonical solution (EvalPlus's rules: exact
equality, a float tolerance, a special oracle for HumanEval/32). Nothing the candidate runs can see
the expected outputs or write a verdict.
"""
from __future__ import annotations

import ast
import fcntl
import functools
import gzip
import hashlib
import importlib.resources
import json
import logging
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from evalkit.cache import user_cache_dir
from evalkit.datafiles import decode_text, jsonl, load_hub_split, require_fields
from evalkit.errors import DataError
from evalkit.scoring.sandbox import CallResult, Limits, Sandbox, decode_value, encode_value, get_sandbox
from evalkit.task import DataSpec, GenerationSettings, Prompt, Sample, SampleSet, Score, Task, register_task

log = logging.getLogger("evalkit")

STOP = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")
CHAT_INSTRUCTION = (
    "Complete the following Python function. Answer with the whole function, its signature and any "
    "imports it needs included, in a single ```python code block.\n\n```python\n{prompt}```"
)
METRICS = ("pass@1", "pass@5", "pass@10", "pass@100")

PLUS_FILE = "humanevalplus/HumanEvalPlus.jsonl.gz"
ORIGINAL_FILE = "humaneval/HumanEval.jsonl.gz"
HF_PLUS = "evalplus/humanevalplus"
HF_ORIGINAL = "openai/openai_humaneval"
HF_SPLIT = "test"
# A branch, not a commit: no commit of either dataset could be looked up offline. A run records it
# as "main", and a warning says so; pin it before publishing numbers.
HF_REVISION = "main"
BUNDLED_FILE = "humaneval_sample.jsonl"

# EvalPlus's time limits, measured on the machine that scores: an input's limit is 4x the canonical
# solution's time on it, at least 1 s (EvalPlus: 4 s; here defining the program is not in a call's
# time). The sandbox takes one limit for all calls, the largest; the whole program gets the sum of
# the per-input limits, capped like EvalPlus's 60 s per task, plus time to start and define.
TIME_FACTOR = 4.0
MIN_CALL_SECONDS = 1.0
MAX_PROGRAM_SECONDS = 60.0
STARTUP_SECONDS = 5.0
# The canonical solutions are trusted; their limits only stop a broken machine from hanging the run.
REFERENCE_CALL_SECONDS = 60.0
REFERENCE_PROGRAM_SECONDS = 600.0
# The result channel holds every output of one program: a candidate may send twice what the
# canonical solution sent (ints written as floats, say), and never less than the sandbox's default.
# The canonical solutions' outputs reach 147 MB on one problem (HumanEval/15's plus inputs).
RESULT_FACTOR = 2
REFERENCE_RESULT_BYTES = 2**30
# Those sizes also bound how many problems' expected outputs a process keeps decoded in memory.
REFERENCES_IN_MEMORY = 8
# human-eval's own timeout for the whole check program.
OFFICIAL_SECONDS = 3.0

# EvalPlus's float comparison is numpy.allclose with rtol 1e-7 and atol at least 1e-6.
RTOL = 1e-7
MIN_FLOAT_ATOL = 1e-6
FIND_ZERO = "HumanEval/32"
SHOWN_CHARS = 200

_FENCE = re.compile(r"```([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


# --- data ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One problem of either schema; HumanEval rows have no inputs, the bundled and HumanEval+ rows have both."""

    task_id: str
    prompt: str
    entry_point: str
    canonical_solution: str
    test: str | None
    base_input: list[list[Any]] | None
    plus_input: list[list[Any]] | None
    atol: float
    where: str


# The problems of every data file this process has read, by the file's digest. Samples carry only
# that digest and where the file is, not the problem: samples.jsonl would otherwise repeat a
# problem's inputs (up to 200 KB, 7.5 MB over HumanEval+) in each of its k records. A scorer in a
# process that has not loaded the file (a re-score, a spawned worker) reads it again and checks
# that its digest has not changed.
_PROBLEMS: dict[str, dict[str, Problem]] = {}


def load_plus(spec: DataSpec) -> SampleSet:
    """HumanEval+ for the graded-on-data tasks: the problems with their test inputs."""
    return _load(spec, plus=True)


def load_original(spec: DataSpec) -> SampleSet:
    """The original HumanEval file, with its assert-based tests, for `humaneval_official`."""
    return _load(spec, plus=False)


def _load(spec: DataSpec, plus: bool) -> SampleSet:
    if spec.kind == "local":
        name = PLUS_FILE if plus else ORIGINAL_FILE
        if spec.path is None:
            raise DataError(f"local HumanEval data needs a directory: pass --data-dir pointing at a folder that contains {name}")
        root = Path(spec.path).expanduser().resolve()
        locator = str(root / name)
        problems, digest = _problems(locator)
        source: dict[str, Any] = {"kind": "local", "path": str(root), "files": {name: digest}}
    elif spec.kind == "hf":
        dataset = HF_PLUS if plus else HF_ORIGINAL
        locator = f"hf:{dataset}@{HF_REVISION}"
        problems, digest = _problems(locator)
        source = {"kind": "hf", "dataset": dataset, "split": HF_SPLIT, "revision": HF_REVISION, "sha256": digest}
    elif spec.kind == "bundled":
        locator = str(importlib.resources.files("evalkit.tasks").joinpath("data", BUNDLED_FILE))
        problems, digest = _problems(locator)
        source = {"kind": "bundled", "file": BUNDLED_FILE, "sha256": digest}
    else:
        raise DataError(f"HumanEval cannot read data of kind {spec.kind!r}; use local, hf or bundled")
    if not problems:
        raise DataError(f"no HumanEval problems found in {locator}")
    samples = []
    for problem in problems.values():
        _require_mode_fields(problem, plus)
        prompt = _hoist_max_fill_import(problem) if plus else problem.prompt
        samples.append(Sample(id=problem.task_id, input=prompt, target=problem.canonical_solution,
                              metadata={"entry_point": problem.entry_point, "data_path": locator, "data_sha256": digest}))
    return SampleSet(samples=samples, source=source)


def _require_mode_fields(problem: Problem, plus: bool) -> None:
    if plus and (problem.base_input is None or problem.plus_input is None):
        raise DataError(f"{problem.where}: missing field(s) base_input, plus_input; the graded-on-data tasks need "
                        f"HumanEval+'s test inputs: pass --data-dir with {PLUS_FILE}")
    if not plus and problem.test is None:
        raise DataError(f"{problem.where}: missing field test, which humaneval_official runs")


def _hoist_max_fill_import(problem: Problem) -> str:
    """HumanEval/115's prompt imports math inside the function, before its docstring; EvalPlus moves
    the import to the top, as HumanEval+'s file has it. A chat model's own `def max_fill` replaces the
    prompt's, import and all, so only a top-level import reaches it."""
    inside = f"\ndef {problem.entry_point}(grid, capacity):\n    import math\n"
    if problem.task_id != "HumanEval/115" or inside not in problem.prompt:
        return problem.prompt
    return "import math\n" + problem.prompt.replace(inside, f"\ndef {problem.entry_point}(grid, capacity):\n", 1)


def _problems(locator: str) -> tuple[dict[str, Problem], str]:
    """The problems at `locator` (a file path or hf:DATASET@REVISION) and the digest naming them."""
    if locator.startswith("hf:"):
        rows = _hub_rows(locator)
        digest = hashlib.sha256(json.dumps([row for _, row in rows], sort_keys=True).encode()).hexdigest()
    else:
        path = Path(locator)
        data = _read_bytes(path)
        # The digest of the file as stored, which SOURCE.md files and checksum lists give.
        digest = hashlib.sha256(data).hexdigest()
        if digest in _PROBLEMS:
            return _PROBLEMS[digest], digest
        rows = list(jsonl(decode_text(_decompressed(data, path), locator), locator))
    problems: dict[str, Problem] = {}
    for where, row in rows:
        problem = _to_problem(row, where)
        if problem.task_id in problems:
            raise DataError(f"{where}: a second row for {problem.task_id}; each task_id may appear once")
        problems[problem.task_id] = problem
    _PROBLEMS[digest] = problems
    return problems, digest


def _problem_of(sample: Sample) -> Problem:
    digest, locator = sample.metadata["data_sha256"], sample.metadata["data_path"]
    problems = _PROBLEMS.get(digest)
    if problems is None:
        problems, found = _problems(locator)
        if found != digest:
            raise DataError(f"{locator} has changed since these samples were made (sha256 {found}, they name {digest}); "
                            f"restore that file to score them")
    if sample.id not in problems:
        raise DataError(f"{locator} has no problem {sample.id!r}")
    return problems[sample.id]


def _hub_rows(locator: str) -> list[tuple[str, Any]]:
    dataset, _, revision = locator[3:].partition("@")
    table = load_hub_split(dataset, HF_SPLIT, revision)
    return [(f"{dataset} {HF_SPLIT} row {i}", dict(row)) for i, row in enumerate(table)]


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.strerror or exc}); pass --data-dir pointing at a folder that "
                        f"contains {PLUS_FILE} and {ORIGINAL_FILE}") from exc


def _decompressed(data: bytes, path: Path) -> bytes:
    if not path.name.endswith(".gz"):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: not a complete gzip file ({exc}); download it again") from exc


def _to_problem(row: Any, where: str) -> Problem:
    """The one place where a row from any source is checked and becomes a Problem."""
    require_fields(row, where, "task_id", "prompt", "entry_point", "canonical_solution")
    for field in ("task_id", "prompt", "entry_point", "canonical_solution"):
        if not isinstance(row[field], str) or not row[field].strip():
            raise DataError(f"{where}: {field} must be a non-empty string, got {row[field]!r:.60}")
    if not row["entry_point"].isidentifier() or f"def {row['entry_point']}(" not in row["prompt"]:
        raise DataError(f"{where}: the prompt does not define entry_point {row['entry_point']!r:.60}")
    if row.get("test") is not None and not isinstance(row["test"], str):
        raise DataError(f"{where}: test must be a string of Python code, got {type(row['test']).__name__}")
    inputs = {}
    for field in ("base_input", "plus_input"):
        value = row.get(field)
        if value is not None and not (isinstance(value, list) and all(isinstance(args, list) for args in value)):
            raise DataError(f"{where}: {field} must be a list of argument lists, got {value!r:.60}")
        inputs[field] = value
    atol = row.get("atol", 0)
    if isinstance(atol, bool) or not isinstance(atol, (int, float)) or not 0 <= atol < 1:
        raise DataError(f"{where}: atol must be a number from 0 to 1, got {atol!r:.60}")
    return Problem(row["task_id"], row["prompt"], row["entry_point"], row["canonical_solution"], row.get("test"),
                   inputs["base_input"], inputs["plus_input"], float(atol), where)


# --- prompts and the program to run --------------------------------------------------------------


def build_completion_prompt(sample: Sample, sample_set: SampleSet) -> Prompt:
    return Prompt(text=sample.input)


def build_chat_prompt(sample: Sample, sample_set: SampleSet) -> Prompt:
    return Prompt(messages=({"role": "user", "content": CHAT_INSTRUCTION.format(prompt=sample.input)},))


def truncate_at_stop(completion: str) -> str:
    """The completion up to the first stop sequence. Backends cut there already; cutting again makes
    outputs recorded without stop sequences (some APIs, replay files) score the same."""
    cut = min((i for i in (completion.find(stop) for stop in STOP) if i >= 0), default=len(completion))
    return completion[:cut]


def extract_code(text: str) -> str:
    """The code of a chat answer: its last ```python block, else its last ``` block, else all of it.
    A block left open by a length cut runs to the end of the text."""
    blocks = _FENCE.findall(text)
    python = [code for language, code in blocks if language.lower() in ("python", "py", "python3")]
    if python:
        return python[-1]
    if blocks:
        return blocks[-1][1]
    return text


def program_of(prompt: str, completion: str, chat: bool) -> str:
    """What runs: the prompt with the completion after it. A chat answer usually restates the whole
    function, which then replaces the prompt's stub; the prompt still supplies the imports and helper
    functions (HumanEval/32's poly, HumanEval/38's encode_cyclic) that the answer may take as given."""
    if chat:
        return prompt + "\n" + without_main_block(extract_code(completion))
    return prompt + truncate_at_stop(completion)


def without_main_block(code: str) -> str:
    """`code` without its top-level `if __name__ == "__main__":` blocks. The sandbox defines the
    program as __main__, so a chat answer's demo would run before the calls, and one that reads
    input or fails an assert of its own would fail every call. (The completion protocol stops
    generating at `\nif __name__` instead.)"""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code  # the sandbox reports it, as the program's own error
    lines = code.split("\n")
    for node in reversed(tree.body):
        if isinstance(node, ast.If) and "__name__" in ast.unparse(node.test) and "__main__" in ast.unparse(node.test):
            del lines[node.lineno - 1 : node.end_lineno]
    return "\n".join(lines)


def _is_blank(completion: str, chat: bool) -> bool:
    code = extract_code(completion) if chat else truncate_at_stop(completion)
    return not code.strip()


# --- comparing outputs -------------------------------------------------------------------------


def outputs_match(got: Any, expected: Any, atol: float) -> bool:
    """EvalPlus's rule for one output, on decoded plain data: equal, or, where floats are involved
    (a nonzero task atol, or floats in the expected value), the same structure with every number
    within atol + 1e-7 * |expected|, atol at least 1e-6."""
    if got == expected:
        return True
    if atol == 0 and not _has_float(expected):
        return False
    return _close(got, expected, max(atol, MIN_FLOAT_ATOL))


def _has_float(value: Any) -> bool:
    if isinstance(value, float):
        return True
    return isinstance(value, (list, tuple)) and any(_has_float(item) for item in value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _close(got: Any, expected: Any, atol: float) -> bool:
    if isinstance(expected, (list, tuple)):
        # A tuple is not a list here, as in EvalPlus (`type(out) == type(exp)`), at every depth.
        return (type(got) is type(expected) and len(got) == len(expected)
                and all(_close(g, e, atol) for g, e in zip(got, expected)))
    if _is_number(expected) and _is_number(got):
        # `==` first: inf equals inf although inf - inf is nan.
        return got == expected or abs(got - expected) <= atol + RTOL * abs(expected)
    return got == expected


def find_zero_holds(args: Sequence[Any], got: Any, atol: float) -> bool:
    """HumanEval/32 asks for any zero of a polynomial, so no single expected output exists; EvalPlus
    accepts x when |poly(xs, x)| <= atol (the problem's atol, 1e-4, which its own test also uses)."""
    if not _is_number(got) or not args or not isinstance(args[0], list) or not all(map(_is_number, args[0])):
        return False
    try:
        # Summed term by term, as the prompt's own poly() sums: with large coefficients the exact
        # math.fsum differs from it by more than atol, and it is poly() that the problem names.
        value = sum(coefficient * math.pow(got, power) for power, coefficient in enumerate(args[0]))
    except (OverflowError, ValueError):
        return False
    return abs(value) <= max(atol, MIN_FLOAT_ATOL)


# --- expected outputs --------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """The canonical solution's outputs on one input list, decoded, and how long each call took."""

    outputs: list[Any]
    seconds: list[float]
    encoded_bytes: int


class ReferenceFailed(Exception):
    """The canonical solution did not run cleanly: a broken data file or sandbox, never the model's fault."""


# Most recently used last.
_REFERENCES: dict[str, Reference] = {}


def _cache_dir() -> Path:
    return user_cache_dir() / "humaneval_expected"


def reference_for(problem: Problem, kind: str) -> Reference:
    """Expected outputs on `kind` ("base" or "plus") inputs: from memory, else the disk cache, else
    by running the canonical solution in the sandbox. The cache is JSON, never pickle: a file that
    anything else wrote can at worst make scores wrong, not run code here."""
    calls = [encode_value(args) for args in _inputs(problem, kind)]
    program = problem.prompt + problem.canonical_solution
    key = hashlib.sha256(json.dumps([problem.task_id, program, calls, _sandbox_python()]).encode()).hexdigest()
    if key in _REFERENCES:
        _REFERENCES[key] = _REFERENCES.pop(key)
        return _REFERENCES[key]
    directory = _cache_dir()
    path = directory / f"{key}.json"
    reference = _read_reference(path, len(calls))
    if reference is None:
        directory.mkdir(parents=True, exist_ok=True)
        # Workers scoring samples of one problem at once would each run the canonical solution;
        # the first takes the lock and computes, the others then find its file.
        with open(directory / f"{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            reference = _read_reference(path, len(calls))
            if reference is None:
                texts, seconds = _run_reference(problem, program, calls)
                _write_atomically(path, {"task_id": problem.task_id, "kind": kind, "python": _sandbox_python(),
                                         "outputs": texts, "seconds": seconds})
                reference = _decoded(texts, seconds)
    _REFERENCES[key] = reference
    if len(_REFERENCES) > REFERENCES_IN_MEMORY:
        del _REFERENCES[next(iter(_REFERENCES))]
    return reference


def _decoded(texts: list[str], seconds: list[float]) -> Reference:
    return Reference([decode_value(text) for text in texts], seconds, sum(len(text) for text in texts))


@functools.lru_cache(maxsize=None)
def _sandbox_python() -> str:
    """The version of the interpreter that runs programs in the sandbox (not necessarily this one):
    outputs computed by another version are not reused."""
    result = get_sandbox().run("import sys; print(sys.version)", limits=Limits(wall_seconds=30.0))
    if result.outcome != "ok":
        raise ReferenceFailed(f"the sandbox cannot run Python ({result.outcome}: {result.detail or result.stderr[-200:]})")
    return result.stdout.decode("utf-8", "replace").strip()


def _inputs(problem: Problem, kind: str) -> list[list[Any]]:
    return (problem.base_input if kind == "base" else problem.plus_input) or []


def _read_reference(path: Path, count: int) -> Reference | None:
    """The cached reference at `path`, or None when it is absent or not one (then it is recomputed)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        texts, seconds = data["outputs"], data["seconds"]
        if len(texts) != count or len(seconds) != count or not all(_is_number(s) and s >= 0 for s in seconds):
            return None
        return _decoded(texts, [float(s) for s in seconds])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _run_reference(problem: Problem, program: str, calls: list[str]) -> tuple[list[str], list[float]]:
    if not calls:
        return [], []
    limits = Limits(wall_seconds=REFERENCE_PROGRAM_SECONDS, output_bytes=REFERENCE_RESULT_BYTES)
    results = get_sandbox().call(program, problem.entry_point, calls, limits=limits, per_call_seconds=REFERENCE_CALL_SECONDS)
    for index, result in enumerate(results):
        if result.outcome != "ok" or result.value is None:
            raise ReferenceFailed(f"the canonical solution of {problem.task_id} ({problem.where}) gave {result.outcome} "
                                  f"on input {index}: {result.error[:SHOWN_CHARS]}")
    return [str(result.value) for result in results], [result.seconds for result in results]


def _write_atomically(path: Path, data: dict[str, Any]) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(data, file)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


# --- scoring -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SecureScorer:
    """Grades on plain data: base inputs, then (for _plus tasks) plus inputs, stopping at the first
    failure. A class rather than four functions so that the runner's pool can pickle each variant."""

    plus: bool
    chat: bool

    def __call__(self, sample: Sample, output: str) -> Score:
        problem = _problem_of(sample)
        sandbox = get_sandbox()
        details: dict[str, Any] = {"mode": "secure", "isolation": sandbox.isolation, "n_inputs": 0}
        if _is_blank(output, self.chat):
            return Score(0.0, None, "no_code", details)
        program = program_of(_hoist_max_fill_import(problem), output, self.chat)
        for kind in ("base", "plus") if self.plus else ("base",):
            try:
                reference = reference_for(problem, kind)
            except ReferenceFailed as error:
                return Score(0.0, None, "sandbox_error", {**details, "error": str(error)})
            outcome, failure, per_call = _grade(sandbox, program, problem, kind, reference)
            details["n_inputs"] += len(reference.outputs)
            details[f"{kind}_call_seconds"] = per_call
            if outcome != "passed":
                return Score(0.0, None, outcome, {**details, "first_failure": failure})
        return Score(1.0, None, "passed", details)


def _grade(sandbox: Sandbox, program: str, problem: Problem, kind: str,
           reference: Reference) -> tuple[str, dict[str, Any] | None, float]:
    """Run `program` on the `kind` inputs; the outcome, the first failure and the per-call limit."""
    inputs = _inputs(problem, kind)
    limits = [max(MIN_CALL_SECONDS, TIME_FACTOR * seconds) for seconds in reference.seconds]
    per_call = max(limits, default=MIN_CALL_SECONDS)
    wall = min(sum(limits), MAX_PROGRAM_SECONDS) + STARTUP_SECONDS
    output_bytes = max(Limits().output_bytes, RESULT_FACTOR * reference.encoded_bytes)
    results = sandbox.call(program, problem.entry_point, [encode_value(args) for args in inputs],
                           limits=Limits(wall_seconds=wall, output_bytes=output_bytes), per_call_seconds=per_call)
    for index, (args, result, expected) in enumerate(zip(inputs, results, reference.outputs)):
        outcome, got = _judge(problem, args, result, expected)
        if outcome != "passed":
            failure = {"input_index": index, "kind": kind, "got": got[:SHOWN_CHARS], "expected": _shown(expected)}
            return outcome, failure, per_call
    return "passed", None, per_call


def _judge(problem: Problem, args: list[Any], result: CallResult, expected: Any) -> tuple[str, str]:
    """One call's outcome and, when it failed, what it returned (or raised) for the report."""
    if result.outcome == "not_run":
        # Only after an earlier call ended the process, and that call is reported first.
        return "sandbox_error", "not run"
    if result.outcome != "ok" or result.value is None:
        return result.outcome, result.error or result.outcome
    try:
        got = decode_value(result.value)
    except ValueError as error:
        return "wrong_answer", f"<malformed result: {error}>"
    if problem.task_id == FIND_ZERO:
        passed = find_zero_holds(args, got, problem.atol)
    else:
        passed = outputs_match(got, expected, problem.atol)
    return ("passed", "") if passed else ("wrong_answer", _shown(got))


def _shown(value: Any) -> str:
    try:
        return repr(value)[:SHOWN_CHARS]
    except ValueError:  # an int beyond Python's 4300-digit limit for str(), e.g. a huge factorial
        return f"<{type(value).__name__} too large to show>"


def score_official(sample: Sample, output: str) -> Score:
    """human-eval's check, run in the sandbox: passed iff the program exits 0."""
    problem = _problem_of(sample)
    sandbox = get_sandbox()
    details: dict[str, Any] = {"mode": "official", "isolation": sandbox.isolation}
    if _is_blank(output, chat=False):
        return Score(0.0, None, "no_code", details)
    program = f"{program_of(problem.prompt, output, chat=False)}\n{problem.test}\ncheck({problem.entry_point})\n"
    result = sandbox.run(program, limits=Limits(wall_seconds=OFFICIAL_SECONDS))
    if result.outcome == "ok":
        return Score(1.0, None, "passed", details)
    error = (result.stderr.strip().splitlines() or [result.detail])[-1]
    # A failed assert of the test is a wrong answer; anything else the program raised, a runtime error.
    outcome = "wrong_answer" if result.outcome == "runtime_error" and error.startswith("AssertionError") else result.outcome
    return Score(0.0, None, outcome, {**details, "error": error[:SHOWN_CHARS]})


# --- registration ------------------------------------------------------------------------------


def _register(name: str, description: str, plus: bool, chat: bool) -> Task:
    return register_task(Task(
        name=name,
        description=description,
        load_samples=load_plus,
        build_prompt=build_chat_prompt if chat else build_completion_prompt,
        request_kind="generate",
        scorer=SecureScorer(plus=plus, chat=chat),
        metrics=METRICS,
        generation=GenerationSettings(temperature=0.0, max_tokens=2048) if chat
        else GenerationSettings(temperature=0.0, max_tokens=1024, stop=STOP),
        parallel_scoring=True,
        benchmark="HumanEval+" if plus else "HumanEval",
    ))


HUMANEVAL = _register("humaneval", "HumanEval, 164 functions completed from their docstrings, graded on the "
                      "original tests' inputs against the canonical outputs", plus=False, chat=False)
HUMANEVAL_PLUS = _register("humaneval_plus", "HumanEval+ (EvalPlus), HumanEval graded on the original and ~120k "
                           "extra inputs against the canonical outputs", plus=True, chat=False)
HUMANEVAL_CHAT = _register("humaneval_chat", "HumanEval for chat models: the whole function in a ```python block, "
                           "graded like humaneval", plus=False, chat=True)
HUMANEVAL_PLUS_CHAT = _register("humaneval_plus_chat", "HumanEval+ for chat models: the whole function in a ```python "
                                "block, graded like humaneval_plus", plus=True, chat=True)
HUMANEVAL_OFFICIAL = register_task(Task(
    name="humaneval_official",
    description="HumanEval graded by human-eval's own check program (exit 0 = pass): its numbers, and its flaw, "
                "since a completion that exits 0 itself passes; prefer humaneval",
    load_samples=load_original,
    build_prompt=build_completion_prompt,
    request_kind="generate",
    scorer=score_official,
    metrics=METRICS,
    generation=GenerationSettings(temperature=0.0, max_tokens=1024, stop=STOP),
    parallel_scoring=True,
    benchmark="HumanEval",
))
