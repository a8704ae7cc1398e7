#!/usr/bin/env python3
"""A fake `sbatch` for tests: runs a batch script at once, every array task in turn.

Understands what examples/slurm uses: --parsable, --array (also from `#SBATCH` lines;
ranges, steps `a-b:s`, lists, `%throttle`), --export=ALL,K=V,..., --dependency=afterok:ID,
--output (`%A`, `%a`, `%j`). A job whose dependency failed never runs (as on SLURM,
where it stays pending). Job states go to $FAKE_SLURM_DIR/jobs.json.
"""

import json
import os
import re
import subprocess
import sys


def parse_array(spec):
    spec = spec.split("%")[0]
    ids = []
    for item in spec.split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", item.strip())
        if not m:
            sys.exit(f"sbatch: error: invalid --array {spec!r}")
        lo, hi, step = int(m[1]), int(m[2] or m[1]), int(m[3] or 1)
        ids.extend(range(lo, hi + 1, step))
    step = 1
    if "," not in spec and ":" in spec:
        step = int(spec.split(":")[1])
    return ids, step


def main(argv):
    opts, i = {}, 0
    while i < len(argv) and argv[i].startswith("-"):
        a = argv[i]
        if "=" in a:
            k, v = a.split("=", 1)
        elif a in ("--parsable",):
            k, v = a, "1"
        else:
            k, v = a, argv[i + 1]
            i += 1
        opts[k] = v
        i += 1
    script, args = argv[i], argv[i + 1:]
    with open(script) as fh:
        for line in fh:
            m = re.match(r"#SBATCH\s+(--[\w-]+)=(\S+)", line)
            if m:
                opts.setdefault(m[1], m[2])
    state_dir = os.environ["FAKE_SLURM_DIR"]
    db_path = os.path.join(state_dir, "jobs.json")
    db = json.load(open(db_path)) if os.path.exists(db_path) else {"next": 100, "jobs": {}}
    job = str(db["next"])
    db["next"] += 1

    env = dict(os.environ)
    for item in opts.get("--export", "ALL").split(",")[1:]:
        k, _, v = item.partition("=")
        env[k] = v
    env.update({"SLURM_JOB_ID": job, "SLURM_CPUS_PER_TASK": "1"})
    state = "COMPLETED"
    dep = opts.get("--dependency")
    if dep:
        kind, _, ids = dep.partition(":")
        assert kind == "afterok", dep
        if any(db["jobs"].get(j) != "COMPLETED" for j in ids.split(":")):
            state = "DependencyNeverSatisfied"
    tasks = [None]
    step = 1
    if "--array" in opts:
        tasks, step = parse_array(opts["--array"])
    if state == "COMPLETED":
        for t in tasks:
            tenv = dict(env)
            out = opts.get("--output", f"slurm-{job}.out")
            if t is not None:
                tenv.update({"SLURM_ARRAY_JOB_ID": job, "SLURM_ARRAY_TASK_ID": str(t),
                             "SLURM_ARRAY_TASK_MIN": str(min(tasks)), "SLURM_ARRAY_TASK_MAX": str(max(tasks)),
                             "SLURM_ARRAY_TASK_STEP": str(step), "SLURM_ARRAY_TASK_COUNT": str(len(tasks))})
                out = out.replace("%A", job).replace("%a", str(t))
            out = out.replace("%j", job)
            with open(out, "w") as log:
                rc = subprocess.call(["bash", script, *args], env=tenv, stdout=log, stderr=subprocess.STDOUT)
            if rc != 0:
                state = "FAILED"
    db["jobs"][job] = state
    with open(db_path, "w") as fh:
        json.dump(db, fh)
    print(job if "--parsable" in opts else f"Submitted batch job {job}")


if __name__ == "__main__":
    main(sys.argv[1:])
