"""Which cases a run does (one part of an array job) and what a run with failed cases leaves.

One rule for every command that processes cases (extract-radiomics, embed):

- sharding is explicit: `--part-id/--num-parts`, or `--parts slurm` which reads the array
  task from SLURM's environment (step and offset arrays included). An array task that
  did not ask for it is not a shard;
- a sharded output records `radlens_part` = {"part_id", "num_parts"}; readers say so,
  and the lens commands refuse it (see `check_table`);
- without keep-going, any failed case means no output (the cache keeps finished cases);
  with it, the output holds the successes and records the failures, a warning counts
  them and the exit code is 0.
"""

from __future__ import annotations

import os

from radlens_cli import log
from radlens_cli.errors import EXIT_DATA, ParameterError, ParameterMessage, RadlensError
from radlens_cli.provenance import json_attr

PART_ATTR = "radlens_part"
PART_PARAMS = ("parts", "part_id", "num_parts")
SLURM_VARS = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX",
              "SLURM_ARRAY_TASK_STEP", "SLURM_ARRAY_TASK_COUNT")


def slurm_part(env=None) -> tuple[int, int]:
    """(part_id, num_parts) of this SLURM array task; `--array=1-9:2` gives parts 0..4 of 5."""
    env = os.environ if env is None else env
    tid = env.get("SLURM_ARRAY_TASK_ID")
    if tid is None:
        raise ParameterError("{parts} slurm: SLURM_ARRAY_TASK_ID is not set (not inside an array job); "
                             "give {part_id} and {num_parts}", *PART_PARAMS)
    try:
        tid = int(tid)
        lo = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        step = int(env.get("SLURM_ARRAY_TASK_STEP", "1") or 1)
        count = int(env["SLURM_ARRAY_TASK_COUNT"]) if "SLURM_ARRAY_TASK_COUNT" in env else None
        hi = int(env["SLURM_ARRAY_TASK_MAX"]) if "SLURM_ARRAY_TASK_MAX" in env else None
    except (ValueError, KeyError):
        shown = ", ".join(f"{k}={env.get(k)!r}" for k in SLURM_VARS if k in env)
        raise ParameterError(f"{{parts}} slurm: cannot read the array task from {shown}; "
                             f"give {{part_id}} and {{num_parts}}", *PART_PARAMS) from None
    if count is None:
        if hi is None:
            raise ParameterError("{parts} slurm: SLURM_ARRAY_TASK_COUNT is not set; give {part_id} and "
                                 "{num_parts}", *PART_PARAMS)
        count = (hi - lo) // step + 1
    if step < 1 or (tid - lo) % step or not 0 <= (tid - lo) // step < count:
        raise ParameterError(f"{{parts}} slurm: array task {tid} is not on the range {lo}..{hi}:{step} of "
                             f"{count} task(s) (a list-style sbatch array?); give {{part_id}} and {{num_parts}}",
                             *PART_PARAMS)
    return (tid - lo) // step, count


def resolve_parts(parts: str | None, part_id: int | None, num_parts: int | None) -> tuple[int, int]:
    """parts: "slurm" | "I/N", or part_id/num_parts; the whole cohort (0, 1) when none is given."""
    if parts is not None and (part_id is not None or num_parts is not None):
        raise ParameterError("give {parts} or {part_id}/{num_parts}, not both", *PART_PARAMS)
    if parts is not None:
        p = parts.strip().lower()
        if p == "slurm":
            part_id, num_parts = slurm_part()
        elif "/" in p:
            a, _, b = p.partition("/")
            try:
                part_id, num_parts = int(a), int(b)
            except ValueError:
                raise ParameterError(f"{{parts}} {parts}: expected slurm or I/N, e.g. 0/8", "parts") from None
        else:
            raise ParameterError(f"{{parts}} {parts}: expected slurm or I/N, e.g. 0/8", "parts")
    elif part_id is None and num_parts is None:
        if os.environ.get("SLURM_ARRAY_TASK_ID") is not None:
            log.info(ParameterMessage("in a SLURM array task but not sharding: every case is done here "
                                      "({parts} slurm splits the cases over the array)", "parts"))
        return 0, 1
    elif part_id is None or num_parts is None:
        raise ParameterError("give {part_id} and {num_parts} together", "part_id", "num_parts")
    if num_parts < 1:
        raise ParameterError(f"{{num_parts}} must be at least 1 (got {num_parts})", "num_parts")
    if not 0 <= part_id < num_parts:
        raise ParameterError(f"{{part_id}} {part_id} is out of range for {{num_parts}} {num_parts} "
                             f"(expected 0..{num_parts - 1})", "part_id", "num_parts")
    return part_id, num_parts


def part_record(part_id: int, num_parts: int) -> dict | None:
    """The `radlens_part` attribute of a sharded output (None for a whole run)."""
    return {"part_id": int(part_id), "num_parts": int(num_parts)} if num_parts > 1 else None


def table_part(attrs: dict) -> dict | None:
    """The part record of a table's attributes (also of an incomplete merge), else None."""
    rec = json_attr(attrs, PART_ATTR, None)
    return rec if isinstance(rec, dict) and rec else None


def table_failures(attrs: dict) -> list:
    rec = json_attr(attrs, "failures", [])
    return rec if isinstance(rec, list) else []


def _part_text(rec: dict) -> str:
    if "missing" in rec:
        return (f"an incomplete merge: part(s) {', '.join(map(str, rec['missing']))} of "
                f"{rec.get('num_parts')} missing")
    return f"part {rec.get('part_id')} of {rec.get('num_parts')} of a sharded run"


def refuse_part(attrs: dict, shown: str) -> None:
    """An error when `attrs` record one part of a sharded run (or an incomplete merge): the
    lens reads whole cohorts (decode and fit-share's tables, compare's decoders)."""
    rec = table_part(attrs)
    if rec is not None:
        raise RadlensError(f"{shown}: is {_part_text(rec)}, not a whole cohort; `radlens merge` the parts first")


def check_table(attrs: dict, shown: str, part: str = "warn") -> None:
    """Say on stderr that a table lacks failed cases or is one part; part="refuse" errors on a part.

    part: "warn" (the default for readers), "refuse" (lens commands: a part is not a
    cohort), "accept" (merge, which reads parts by design).
    """
    rec = table_part(attrs)
    if rec is not None and part != "accept":
        if part == "refuse":
            refuse_part(attrs, shown)
        log.warn(f"{shown}: is {_part_text(rec)}")
    failed = table_failures(attrs)
    if failed and part != "accept":
        ids = sorted({str(f.get("case_id")) for f in failed})
        more = f" (+{len(ids) - 5} more)" if len(ids) > 5 else ""
        log.warn(f"{shown}: written with {len(ids)} failed case(s) left out: {', '.join(ids[:5])}{more}")


def failed_cases(failures: list[dict]) -> list[str]:
    return sorted({str(f["case_id"]) for f in failures if f.get("status", "failed") == "failed"})


def refuse_failed_run(failures: list[dict], n_tried: int, output: str, keep_going: bool,
                      failures_path: str | None, cached: bool) -> None:
    """Without keep-going any failed case stops the run before its output is written."""
    ids = failed_cases(failures)
    if not ids or keep_going:
        return
    more = f" (+{len(ids) - 5} more)" if len(ids) > 5 else ""
    where = f"listed in {failures_path}" if failures_path else "see the lines above"
    keep = "; the finished cases are cached, a rerun does only the rest" if cached else ""
    raise ParameterError(f"{len(ids)} of {n_tried} case(s) failed ({', '.join(ids[:5])}{more}; {where}); "
                         f"{output} not written{keep} ({{keep_going}} writes the others)", "keep_going",
                         exit_code=EXIT_DATA, plain={"keep_going": "keep_going=True"})


def warn_partial(failures: list[dict], n_written: int, output: str, failures_path: str | None) -> None:
    """The warning line of a --keep-going run that left failed cases out."""
    ids = failed_cases(failures)
    if ids:
        log.warn(f"{len(ids)} case(s) failed and are left out; {n_written} written to {output}"
                 + (f"; failures listed in {failures_path}" if failures_path else ""))
