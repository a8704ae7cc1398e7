"""One run of a command over a cohort's cases (extract-radiomics, embed): which part of the
cases it does, where its failures go, whether a failed case stops it (keep_going), and the
empty or partial outputs that follow. The commands differ only in what they do per case."""

from __future__ import annotations

import json
from dataclasses import dataclass

from radlens_cli import log
from radlens_cli.errors import RadlensError
from radlens_cli.io.cases import PART_ATTR, part_record, refuse_failed_run, resolve_parts, warn_partial
from radlens_cli.io.files import check_output, check_side_output
from radlens_cli.io.formats import write_csv
from radlens_cli.io.tables import table_format

FAILURE_FIELDS = ("case_id", "modality", "path", "reason", "status")


def write_failures(path: str, failures: list[dict], force: bool) -> None:
    """The failures CSV (FAILURE_FIELDS) of extract-radiomics and embed."""
    import pandas as pd  # heavy: kept out of the module's import

    rows = pd.DataFrame([{k: rec.get(k, "") for k in FAILURE_FIELDS} for rec in failures],
                        columns=list(FAILURE_FIELDS), dtype=object)
    write_csv(rows, path, force, float_format=None, lineterminator="\r\n")  # csv.writer's line ends, as before


def cohort_part(manifest, name: str, verb: str, part_id: int = 0, num_parts: int = 1):
    """Part `part_id` of `num_parts` of `manifest`'s cases (named `name` in messages); none
    at all is an error for a whole run, an empty part for a part of an array."""
    part = manifest.shard(part_id, num_parts) if num_parts > 1 else manifest
    if num_parts > 1:
        log.info(f"part {part_id} of {num_parts}: {len(part)} case(s)")
    if len(part) == 0 and num_parts == 1:
        raise RadlensError(f"{name}: no case to {verb}")
    return part


@dataclass
class CohortRun:
    """A run over (one part of) a cohort. `start` checks the outputs before any work;
    `cases` takes this part's cases; `finish` writes the failures CSV and refuses a run
    whose cases failed (unless keep_going); `record` adds the failures and the part to the
    output's attributes; `done` warns about the cases a keep-going run left out."""

    output: str
    failures_path: str | None = None
    keep_going: bool = False
    force: bool = False
    part_id: int = 0
    num_parts: int = 1
    cached: bool = False      # finished cases are cached: a rerun does only the rest

    @classmethod
    def start(cls, output: str, parts: str | None = None, part_id: int | None = None,
              num_parts: int | None = None, failures_path: str | None = None, keep_going: bool = False,
              force: bool = False, cached: bool = False) -> "CohortRun":
        part_id, num_parts = resolve_parts(parts, part_id, num_parts)
        check_output(output, force)
        table_format(output)
        check_side_output(failures_path, output, "failures", force)
        return cls(output, failures_path, keep_going, force, part_id, num_parts, cached)

    def cases(self, manifest, name: str, verb: str):
        """This part's cases of `manifest` (see cohort_part)."""
        return cohort_part(manifest, name, verb, self.part_id, self.num_parts)

    def finish(self, failures: list[dict], n_tried: int, n_ok: int) -> None:
        """After every case ran: the failures CSV, then an error when no case succeeded (a
        part stays a part with keep_going, so the merge of the others runs) or when any
        failed without keep_going."""
        if self.failures_path:
            write_failures(self.failures_path, failures, self.force)
        if n_ok == 0 and n_tried and not (self.keep_going and self.num_parts > 1):
            raise RadlensError(f"no case succeeded ({n_tried} tried); {self.output} not written"
                               + (f"; failures listed in {self.failures_path}" if self.failures_path else ""))
        failed = [f for f in failures if f.get("status", "failed") == "failed"]
        refuse_failed_run(failed, n_tried, self.output, self.keep_going, self.failures_path, self.cached)

    def record(self, attrs: dict, failures: list[dict], **more: str) -> dict:
        """The output's attributes with the failed cases, `more` (JSON texts) and, for a
        part, its part record."""
        attrs["failures"] = json.dumps([f for f in failures if f.get("status", "failed") == "failed"])
        attrs.update(more)
        if part_record(self.part_id, self.num_parts):
            attrs[PART_ATTR] = json.dumps(part_record(self.part_id, self.num_parts))
        return attrs

    def done(self, failures: list[dict], n_written: int) -> None:
        warn_partial([f for f in failures if f.get("status", "failed") == "failed"], n_written, self.output,
                     self.failures_path)
