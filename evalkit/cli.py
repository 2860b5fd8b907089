"""The `evalkit` command line."""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

from evalkit.backend import backend_schemes, parse_model_args
from evalkit.errors import UserError
from evalkit.rundir import CONFIG, RESULTS, RunDir
from evalkit.task import DataSpec, all_presets, all_tasks

log = logging.getLogger("evalkit")

DESCRIPTION = """\
Evaluate a model checkpoint on standard benchmarks, honestly and fast.

  evalkit run --model hf:/path/to/checkpoint --tasks mmlu,mmlu_cot --limit 200 --data-dir DIR
  evalkit show runs/<run>       results table of a run
  evalkit list                  tasks, backends and presets

A run killed half-way continues where it stopped when the same command is started again."""


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evalkit", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser("run", help="evaluate a model on tasks and write a run directory",
                              description="Evaluate a model on tasks; write config.json, samples.jsonl and results.json "
                                          "into a run directory named after the run's configuration. Starting the same "
                                          "command again resumes it.")
    model = run.add_argument_group("model")
    model.add_argument("--model", required=True, metavar="URI",
                       help=f"model URI SCHEME:LOCATION, e.g. hf:/path/to/checkpoint (schemes: {', '.join(backend_schemes())})")
    model.add_argument("--model-args", metavar="K=V,...", help="backend options, e.g. dtype=bfloat16,batch_size=8,chat_template=off")
    server = run.add_argument_group("served models (openai:MODEL)")
    server.add_argument("--base-url", metavar="URL[,URL...]",
                        help="OpenAI-compatible endpoints serving the model, e.g. http://localhost:8000/v1 (default "
                             "$OPENAI_BASE_URL); several: requests go to the least busy, a failing one is set aside")
    server.add_argument("--api-key-env", metavar="VAR",
                        help="environment variable holding the API key (default OPENAI_API_KEY); the key is never written")
    server.add_argument("--max-concurrency", type=int, metavar="N", help="requests in flight over all endpoints (default 32)")
    what = run.add_argument_group("what to run")
    what.add_argument("--tasks", metavar="A,B", help="comma-separated task names (see `evalkit list`)")
    what.add_argument("--preset", metavar="NAME", help="a named protocol: tasks and generation settings (see `evalkit list`)")
    what.add_argument("--limit", type=int, metavar="N", help="only the first N samples of each task, in the dataset's fixed order")
    generation = run.add_argument_group("generation (override the preset, then the task's defaults)")
    generation.add_argument("--samples", type=int, metavar="K", help="completions per sample (avg@k, maj@k, pass@k)")
    generation.add_argument("--temperature", type=float, metavar="T")
    generation.add_argument("--top-p", type=float, metavar="P")
    generation.add_argument("--max-tokens", type=int, metavar="N", help="maximum new tokens per completion")
    generation.add_argument("--seed", type=int, default=0, metavar="S", help="run seed; each completion's seed derives from it (default 0)")
    data = run.add_argument_group("data")
    data.add_argument("--data-dir", type=Path, metavar="DIR",
                      help="local data directory (layout of shared/data: DIR/mmlu/test.jsonl, ...); default $EVALKIT_DATA")
    data.add_argument("--data", choices=("hf", "bundled"),
                      help="hf: the Hugging Face hub at pinned revisions (default); bundled: evalkit's tiny offline sample set")
    lcb = run.add_argument_group("LiveCodeBench (also settable as EVALKIT_LCB_* environment variables)")
    lcb.add_argument("--since", metavar="YYYY-MM-DD", help="only problems released on or after this day")
    lcb.add_argument("--until", metavar="YYYY-MM-DD", help="only problems released on or before this day (the whole day counts)")
    lcb.add_argument("--model-cutoff", metavar="YYYY-MM-DD",
                     help="the model's training cutoff: problems released on or before it are marked possibly contaminated")
    lcb.add_argument("--lcb-release", metavar="TAG", help="release_v1 ... release_v6 or release_latest (default)")
    lcb.add_argument("--lcb-compare", choices=("official", "tolerant"),
                     help="official: exact as the LiveCodeBench runner; tolerant: numbers within 1e-6")
    out = run.add_argument_group("output and execution")
    out.add_argument("--output", type=Path, default=Path("runs"), metavar="DIR", help="parent of run directories (default runs/)")
    out.add_argument("--cache", type=Path, metavar="FILE", help="request cache (default $EVALKIT_CACHE or OUTPUT/.cache/requests.sqlite)")
    out.add_argument("--no-cache", action="store_true", help="do not read or write the request cache")
    out.add_argument("--chunk-size", type=int, default=64, metavar="N",
                     help="requests per backend call; a crash loses at most one chunk (default 64)")
    out.add_argument("--score-workers", type=int, metavar="N",
                     help="scoring processes for tasks with costly scorers (math, code); default one per core, at most 8")
    out.add_argument("--no-progress", action="store_true", help="no progress bars")
    scale = run.add_argument_group("scale-out")
    scale.add_argument("--shard", metavar="I/N",
                       help="run only shard I of N (0-based) into its own run directory; `evalkit merge` joins the N "
                            "shards into the run this command without --shard would write")
    scale.add_argument("--executor", choices=("local", "ray"), default="local",
                       help="local: this process (default); ray: shards as Ray tasks, merged at the end (pip install "
                            "'evalkit[ray]'; joins $RAY_ADDRESS when set, where --output must be storage every node reads)")
    scale.add_argument("--ray-shards", type=int, metavar="N",
                       help="shards for --executor ray (default: the GPUs Ray sees for hf:/moe: models, else its CPUs)")
    run.set_defaults(handler=_cmd_run)

    merge = commands.add_parser("merge", help="join the shards of a run (--shard I/N) into one run directory",
                                description="Join the N finished shard directories of one run into the run directory "
                                            "the unsharded command would write: same samples.jsonl and results.json.")
    merge.add_argument("shards", nargs="+", type=Path, metavar="RUN_DIR", help="the shard directories, all N of them")
    merge.add_argument("--output", type=Path, metavar="DIR", help="parent of the merged run (default: the first shard's parent)")
    merge.set_defaults(handler=_cmd_merge)

    show = commands.add_parser("show", help="print a run's results table", description="Print a run's configuration and results.")
    show.add_argument("run_dir", type=Path, metavar="RUN")
    show.add_argument("--breakdown", metavar="KEY", help="also print the per-group table for KEY (e.g. subject, category)")
    show.set_defaults(handler=_cmd_show)

    report = commands.add_parser("report", help="write a run's self-contained HTML report",
                                 description="Write RUN/report.html (or FILE): configuration and provenance, metrics "
                                             "with CIs, breakdown charts and every sample, browsable offline.")
    report.add_argument("run_dir", type=Path, metavar="RUN")
    report.add_argument("-o", "--output", type=Path, metavar="FILE", help="default RUN/report.html")
    report.set_defaults(handler=_cmd_report)

    rescore = commands.add_parser("rescore", help="score a run's recorded outputs again, without the model",
                                  description="Re-score samples.jsonl with the current scorers and rewrite results.json.")
    rescore.add_argument("run_dir", type=Path, metavar="RUN")
    rescore.set_defaults(handler=_cmd_rescore)

    board = commands.add_parser("leaderboard", help="runs beside published figures, with protocols and sources",
                                description="A leaderboard of the given runs (or folders of runs) and the curated "
                                            "reference figures of leaderboards/reference_scores.csv; a run measured "
                                            "under another protocol than a figure is marked, never silently compared.")
    board.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="run directories, or folders holding them")
    board.add_argument("-o", "--output", type=Path, default=Path("leaderboard.html"), metavar="FILE",
                       help="where to write it (default leaderboard.html)")
    board.add_argument("--format", choices=("html", "md", "csv"), help="default: from the output's suffix, else html")
    board.add_argument("--references", type=Path, metavar="CSV", help="another reference table in the same schema")
    board.set_defaults(handler=_cmd_leaderboard)

    gate = commands.add_parser("gate", help="fail CI when a candidate run regresses against a baseline run",
                               description="Paired statistical comparison of two runs on the samples both scored. "
                                           "Exit 0 pass, 1 regression, 2 cannot compare (different protocol, data or "
                                           "tasks). Appends a Markdown summary to $GITHUB_STEP_SUMMARY when set.")
    gate.add_argument("--baseline", required=True, type=Path, metavar="RUN")
    gate.add_argument("--candidate", required=True, type=Path, metavar="RUN")
    gate.add_argument("--rules", type=Path, metavar="TOML", help="gate rules (default: max_drop 1 point, alpha 0.05)")
    gate.add_argument("--junit", type=Path, metavar="FILE", help="also write JUnit XML (one test case per task and metric)")
    gate.set_defaults(handler=_cmd_gate)

    listing = commands.add_parser("list", help="list tasks, backends and presets")
    listing.set_defaults(handler=_cmd_list)

    hf = commands.add_parser("hf", help="Hugging Face backend utilities")
    hf_commands = hf.add_subparsers(dest="hf_command", metavar="COMMAND", required=True)
    init = hf_commands.add_parser("init", help="write a tiny random checkpoint (offline), for smoke runs and tests")
    init.add_argument("directory", type=Path, metavar="DIR")
    init.add_argument("--preset", default="tiny", help="size preset (default tiny)")
    init.add_argument("--seed", type=int, default=0)
    init.set_defaults(handler=_cmd_hf_init)

    moe = commands.add_parser("moe", help="bundled MoE (DeepSeek-V3 architecture) backend utilities")
    moe_commands = moe.add_subparsers(dest="moe_command", metavar="COMMAND", required=True)
    moe_init = moe_commands.add_parser(
        "init", help="write a tiny random DeepseekV3 checkpoint in the Hugging Face FP8 format (offline)"
    )
    moe_init.add_argument("directory", type=Path, metavar="DIR")
    moe_init.add_argument("--preset", default="tiny", help="size preset (default tiny)")
    moe_init.add_argument("--seed", type=int, default=0)
    moe_init.add_argument("--weights", choices=("fp8", "float32", "bfloat16"), default="fp8",
                          help="fp8: block-FP8 projections with weight_scale_inv (default); float32/bfloat16: "
                               "the same model dequantized, loadable by transformers")
    moe_init.set_defaults(handler=_cmd_moe_init)
    return parser


def _data_spec(args: argparse.Namespace) -> DataSpec:
    if args.data_dir is not None:
        return DataSpec("local", args.data_dir)
    if args.data is not None:
        return DataSpec(args.data)
    if os.environ.get("EVALKIT_DATA"):
        return DataSpec("local", Path(os.environ["EVALKIT_DATA"]))
    return DataSpec("hf")


_LCB_ENVIRONMENT = {"since": "EVALKIT_LCB_SINCE", "until": "EVALKIT_LCB_UNTIL", "model_cutoff": "EVALKIT_LCB_MODEL_CUTOFF",
                    "lcb_release": "EVALKIT_LCB_RELEASE", "lcb_compare": "EVALKIT_LCB_COMPARE"}


def _cmd_run(args: argparse.Namespace) -> int:
    from evalkit.runner import RunOptions, run

    # The task reads its options from the environment, so that scoring workers (forked or spawned) see them too.
    for flag, variable in _LCB_ENVIRONMENT.items():
        if getattr(args, flag) is not None:
            os.environ[variable] = getattr(args, flag)

    if args.chunk_size < 1 or (args.score_workers is not None and args.score_workers < 1):
        raise UserError("--chunk-size and --score-workers must be at least 1")
    options = RunOptions(
        model=args.model,
        tasks=tuple(name.strip() for name in args.tasks.split(",") if name.strip()) if args.tasks else (),
        model_args=_model_args(args),
        preset=args.preset,
        limit=args.limit,
        samples=args.samples,
        temperature=args.temperature,
        top_p=args.top_p,
        max_tokens=args.max_tokens,
        seed=args.seed,
        data=_data_spec(args),
        output=args.output,
        cache=args.cache,
        use_cache=not args.no_cache,
        chunk_size=args.chunk_size,
        score_workers=args.score_workers,
        progress=not args.no_progress,
        shard=_parse_shard(args.shard) if args.shard is not None else None,
    )
    if args.executor == "ray":
        from evalkit.ray_executor import run_on_ray

        if options.shard is not None:
            raise UserError("--shard and --executor ray do not combine (Ray makes the shards); drop --shard")
        path = run_on_ray(options, args.ray_shards)
    elif args.ray_shards is not None:
        raise UserError("--ray-shards needs --executor ray; add it or drop --ray-shards")
    else:
        path = run(options)
    _print_results(path)
    print(f"\nrun directory: {path}\nreport: {path / 'report.html'}")
    return _report_requests(path)


_SERVER_FLAGS = {"base_url": "--base-url", "api_key_env": "--api-key-env", "max_concurrency": "--max-concurrency"}


def _model_args(args: argparse.Namespace) -> dict[str, Any]:
    """--model-args, plus the served-model flags, which are backend options with flags of their own."""
    options = parse_model_args(args.model_args)
    for key, flag in _SERVER_FLAGS.items():
        value = getattr(args, key)
        if value is None:
            continue
        if not args.model.startswith("openai:"):
            raise UserError(f"{flag} applies to openai:MODEL models only; drop it for {args.model}")
        if key in options:
            raise UserError(f"{flag} and --model-args {key}=... both set it; keep one")
        options[key] = value
    return options


def _report_requests(path: Path) -> int:
    """Print the backend's request counters (HTTP backends); the exit code: 1 when requests failed for good."""
    results = RunDir(path).read_json(RESULTS)
    backend = results.get("invocation", {}).get("backend", {})
    if backend.get("requests_sent"):
        reasons = ", ".join(f"{reason}: {count}" for reason, count in backend["retries_by_reason"].items())
        print(f"requests: {backend['requests_sent']} sent, {backend['retries']} retried{f' ({reasons})' if reasons else ''}, "
              f"{backend['failed']} failed after retries")
    failed = sum(task.get("n_errors", 0) for task in results["tasks"].values())
    if not failed:
        return 0
    print(f"evalkit: error: {failed} request(s) failed after retries; they are recorded as errors, left out of the "
          f"metrics, and asked again when you run the same command again", file=sys.stderr)
    return 1


def _parse_shard(text: str) -> tuple[int, int]:
    """I/N as two integers; the plan checks their range (runner.shard_plans)."""
    index, sep, count = text.partition("/")
    if sep:
        try:
            return int(index), int(count)
        except ValueError:
            pass
    raise UserError(f"--shard {text!r} is not I/N with 0 <= I < N; write e.g. --shard 0/4 (shards 0/4 ... 3/4)")


def _cmd_merge(args: argparse.Namespace) -> int:
    from evalkit.merge import merge

    path = merge(args.shards, args.output)
    _print_results(path)
    print(f"\nrun directory: {path}\nreport: {path / 'report.html'}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    _print_results(args.run_dir, args.breakdown)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from evalkit.report import write_report

    print(f"report written to {write_report(args.run_dir, args.output)}")
    return 0


def _cmd_rescore(args: argparse.Namespace) -> int:
    from evalkit.runner import rescore

    rescore(args.run_dir)
    _print_results(args.run_dir)
    return 0


def _cmd_leaderboard(args: argparse.Namespace) -> int:
    from evalkit.leaderboard import write_leaderboard

    path = write_leaderboard(args.runs, args.output, args.format, args.references)
    print(f"leaderboard written to {path}")
    return 0


def _cmd_gate(args: argparse.Namespace) -> int:
    from evalkit.gate import gate, load_rules, render_junit, render_table, write_step_summary

    report = gate(args.baseline, args.candidate, load_rules(args.rules) if args.rules else None)
    print(render_table(report))
    if args.junit:
        args.junit.write_text(render_junit(report), encoding="utf-8")
    write_step_summary(report)
    return report.exit_code


def _cmd_list(args: argparse.Namespace) -> int:
    tasks = all_tasks()
    rows = [(t.name, t.request_kind, ",".join(t.metrics),
             _settings_text(t.generation) if t.request_kind == "generate" else "-", t.description) for t in tasks.values()]
    print("Tasks")
    _print_table(("name", "kind", "metrics", "defaults", "description"), rows)
    print("\nBackends (model URI schemes)")
    print("  " + ", ".join(f"{scheme}:" for scheme in backend_schemes()))
    print("\nPresets")
    presets = all_presets()
    if presets:
        _print_table(("name", "tasks", "settings", "description"),
                     [(p.name, ",".join(p.tasks), _settings_text(p.generation), p.description) for p in presets.values()])
    else:
        print("  (none)")
    return 0


def _cmd_hf_init(args: argparse.Namespace) -> int:
    from evalkit.backends.hf_tiny import write_tiny_checkpoint

    path = write_tiny_checkpoint(args.directory, preset=args.preset, seed=args.seed)
    print(f"wrote a tiny random checkpoint to {path}; use it with --model hf:{path}")
    return 0


def _cmd_moe_init(args: argparse.Namespace) -> int:
    from evalkit.backends.moe.tiny import TINY_PRESETS, write_tiny_checkpoint

    if args.preset not in TINY_PRESETS:
        raise UserError(f"unknown moe preset {args.preset!r}; known presets: {', '.join(TINY_PRESETS)}")
    path = write_tiny_checkpoint(args.directory, preset=args.preset, seed=args.seed, weights=args.weights)
    print(f"wrote a tiny random DeepseekV3 checkpoint ({args.weights} weights) to {path}; "
          f"use it with --model moe:{path}")
    return 0


def _settings_text(settings: Any) -> str:
    values = settings if isinstance(settings, dict) else vars(settings)
    short = {"temperature": "T", "top_p": "top_p", "max_tokens": "max_tokens", "samples": "k"}
    return " ".join(f"{short[k]}={v}" for k, v in values.items() if k in short)


def _print_results(path: Path, breakdown_key: str | None = None) -> None:
    rundir = RunDir(path)
    config, results = rundir.read_json(CONFIG), rundir.read_json(RESULTS)
    print(f"model   {config['model']['uri']}  ({config['model']['identity']})")
    data = config["data"]
    print(f"data    {data['kind']}{' ' + data['path'] if data.get('path') else ''}    seed {config['seed']}"
          f"    limit {config['limit']}    evalkit {config.get('evalkit_version')}")
    rows = []
    for name, task in results["tasks"].items():
        for metric, value in task["metrics"].items():
            rows.append((name, metric, _pct(value["value"]), f"± {_pct(value['stderr'])}",
                         f"[{_pct(value['ci_low'])}, {_pct(value['ci_high'])}]", str(value["n"]), str(task["n_per_sample"]),
                         str(task.get("n_truncated", 0)), str(task.get("n_errors", 0))))
    print()
    _print_table(("task", "metric", "value", "stderr", "95% CI", "n", "k", "truncated", "failed"), rows)
    if breakdown_key:
        for name, task in results["tasks"].items():
            groups = task["breakdown"].get(breakdown_key)
            if groups is None:
                raise UserError(f"task {name} has no breakdown {breakdown_key!r}; it has: {', '.join(task['breakdown']) or 'none'}")
            print(f"\n{name} by {breakdown_key}")
            metric_names = list(task["metrics"])
            _print_table((breakdown_key, *metric_names), [(g, *(_pct(v[m]) for m in metric_names)) for g, v in groups.items()])


def _pct(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    for row in (header, *rows):
        print("  " + "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(format="evalkit: %(levelname)s: %(message)s", level=logging.INFO, stream=sys.stderr)
    # The HTTP client logs every request at INFO: one line per sample would bury evalkit's own messages.
    for chatty in ("httpx", "openai"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except UserError as error:
        if args.debug:
            traceback.print_exc()
        print(f"evalkit: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and friends: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print("evalkit: interrupted; finished samples are saved: run the same command again to continue", file=sys.stderr)
        return 130
    except Exception as error:  # a backend or scorer crashed: say so in one line, keep finished work
        if args.debug:
            traceback.print_exc()
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(f"evalkit: error: {type(error).__name__}: {first_line} (finished samples are saved: run the same "
              f"command again to continue; --debug shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
