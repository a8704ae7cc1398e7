"""Options more than one command takes, each declared once (csvkit's common arguments).

A command uses one as a parameter default: `force: bool = force_option()`. Each flag has
one name, one meaning and one help text everywhere; a command passes `help=` only where
the flag's object differs (what `--output` writes, what `--modalities` are used for).
Sections: output and run control; sharded cohort runs; decoders compared; encoders and
the preprocessing group (modalities, mask, spacing, crop, norm, norm region, orient,
layout) that embed, finetune and layers share; inputs named by flag (one of them stdin).
"""

from __future__ import annotations

import os

import typer

from radlens_cli import provenance
from radlens_cli.errors import RadlensError, UsageError
from radlens_cli.io.files import input_path
from radlens_cli.io.cases import refuse_part
from radlens_cli.io.formats.decoder import load_decoder
from radlens_cli.io.stability import read_icc as read_icc_table
from radlens_cli.lens.compare import checkpoint_labels

# ------------------------------------------------------------------ output and run control


def output_option(help: str = "Output file (`-` for stdout).", default=...):
    return typer.Option(default, "--output", "-o", help=help, show_default=default is not ...)


def force_option():
    return typer.Option(False, "--force", "-f", help="Overwrite the output if it exists.")


def seed_option(default: int = 0, help: str = "Random seed; the same seed gives the same output on CPU."):
    return typer.Option(default, "--seed", help=help)


def jobs_option(default: int = 1, help: str = "Worker processes."):
    return typer.Option(default, "--jobs", "-j", min=1, help=help)


def device_option(default: str = "auto"):
    return typer.Option(default, "--device", help="Torch device: auto (cuda when available), cpu, cuda or cuda:N.")


def allow_missing_option(help: str = "Use the cases present in both inputs instead of failing on a mismatch."):
    return typer.Option(False, "--allow-missing", help=help)


def strict_geometry_option():
    return typer.Option(False, "--strict-geometry", help="A mask whose origin lies on none of its case's image "
                        "voxel lattices (another patient's mask, or one shifted) fails that case instead of "
                        "a warning.")


# ------------------------------------------------------------------ sharded cohort runs (extract-radiomics, embed)


def parts_option():
    return typer.Option(None, "--parts", help="Do one part of the cases: `slurm` takes it from the SLURM "
                        "array task (SLURM_ARRAY_TASK_ID/MIN/STEP/COUNT; step and offset arrays work), "
                        "`I/N` is part I of N. An array job does not shard unless asked.")


def part_id_option():
    return typer.Option(None, "--part-id", min=0, help="This part's index, 0..num-parts-1 (with --num-parts).")


def num_parts_option():
    return typer.Option(None, "--num-parts", min=1, help="Split the cases (sorted by case_id) into this many "
                        "parts, taking every num-parts-th; join the parts with `radlens merge`.")


def keep_going_option():
    return typer.Option(False, "--keep-going", help="When some cases fail, still write the others (the "
                        "failures recorded in the output and --failures), warn, and exit 0. Without it a "
                        "failed case means exit 1 and no output.")


# ------------------------------------------------------------------ decoders compared (compare, stats)


def labels_option():
    return typer.Option(None, "--labels", help="Comma-separated checkpoint names for the compared decoders, "
                        "in order (default: their file names).")


def allow_different_preprocessing_option(help: str = "Compare decoders whose embeddings were made with "
                                         "different recorded preprocessing (spacing, crop, layer, pooling...)."):
    return typer.Option(False, "--allow-different-preprocessing", help=help)


# ------------------------------------------------------------------ encoders (embed, finetune, layers)


def trust_checkpoint_option(help: str = "Load a checkpoint that needs full unpickling (which runs code stored "
                            "in the file) after a warning; only for files from a source you trust. Recorded "
                            "in the output's provenance."):
    return typer.Option(False, "--trust-checkpoint", help=help)


def arch_option():
    return typer.Option(None, "--arch", help="Architecture of a plain or FCMAE checkpoint (default: inferred "
                        "from its weights; radlens checkpoints record it). A mismatch is an error.")


def weights_option():
    return typer.Option(None, "--weights", help="State dict for a package.module:factory (or TorchScript) "
                        "model: a torch checkpoint (plain, Lightning `state_dict`, `model.`/`module.` "
                        "prefixes found automatically; read weights-only) or a .safetensors file.")


# ------------------------------------------------------------------ the preprocessing group
# What a volume goes through before an encoder sees it; embed records the values it used,
# finetune records them in the checkpoint, and both default to the encoder's record.


def modalities_option(help: str = "Image columns stacked as channels, in this order (e.g. t2,dwi,adc).",
                      default=..., metavar: str | None = None):
    return typer.Option(default, "--modalities", help=help, metavar=metavar)


MASK_HELP = ("Mask column the box is centred on; `zones:1` one label, `zones:1+2` a union; "
             "DICOM-SEG/RTSTRUCT segments by name: `seg:prostate`, `rt:PZ+TZ`, `seg:#2`.")


def mask_option(help: str = MASK_HELP, default=..., metavar: str | None = None):
    return typer.Option(default, "--mask", help=help, metavar=metavar)


def spacing_option():
    return typer.Option(None, "--spacing", help="Voxel spacing x,y,z in mm, along the box's axes [default: "
                        "the encoder's record, else 0.5,0.5,1.0].")


def crop_option(help: str = "Box x,y,z in voxels around the mask, same axis order as --spacing [default: "
                "the encoder's record, else 224,224,64 (ProFound's)]. Formerly D,H,W: 64,224,224 is now "
                "224,224,64 (old records still read right)."):
    return typer.Option(None, "--crop", help=help)


def norm_option():
    return typer.Option(None, "--norm", help="Per-channel normalisation: zscore (over non-zero voxels), "
                        "percentile (0.5-99.5 to 0-1), none, or window:LO,HI (fixed, e.g. CT "
                        "window:-1000,400) [default: the encoder's record, else zscore].")


def norm_region_option():
    return typer.Option(None, "--norm-region", help="Where zscore/percentile statistics come from: box "
                        "(non-zero box voxels inside the sequence) or volume (the whole scan's non-zero "
                        "voxels, like MONAI NormalizeIntensity(nonzero=True)) [default: the encoder's "
                        "record, else box].")


def orient_option():
    return typer.Option(None, "--orient", help="Box axes: native (the first modality's own voxel axes), RAS "
                        "or LPS (the nearest permutation/flip of those axes, like MONAI Orientationd; the "
                        "scan's tilt is kept) [default: the encoder's record, else native].")


def layout_option():
    return typer.Option(None, "--layout", help="Tensor axis order: zyx gives (C, z, y, x) (built-in "
                        "encoder), xyz gives (C, x, y, z) (MONAI/NIfTI-trained models) [default: the "
                        "encoder's record, else zyx].")


def parse_triple(text, what: str, cast=float, positive: bool = False) -> tuple:
    """`x,y,z` (or `XxYxZ`) of an option such as --spacing, --crop, --size; `what` is the flag."""
    try:
        vals = tuple(cast(x) for x in str(text).replace("x", ",").split(",") if x.strip())
    except ValueError:
        raise UsageError(f"{what}: expected three comma-separated numbers, got {text!r}") from None
    if len(vals) != 3:
        raise UsageError(f"{what}: expected three comma-separated numbers, got {text!r}")
    if positive and min(vals) <= 0:
        raise UsageError(f"{what}: expected three positive numbers x,y,z, got {text!r}")
    return vals


# ------------------------------------------------------------------ decoders compared (compare, stats)

def decoder_inputs(pre_path: str, ft_path) -> list:
    """The compared paths of compare's and stats' DEC_REF DEC [DEC ...], checked
    before any output or file is touched."""
    others = [ft_path] if isinstance(ft_path, str) else list(ft_path)
    if not others:
        raise UsageError("give the reference decoder and at least one decoder to compare with it")
    if [pre_path, *others].count("-") > 1:
        raise UsageError("only one input can be `-` (stdin)")
    return others


def load_decoders(pre_path: str, others: list, names: list, labels) -> tuple:
    """(reference, compared decoders, labels): a piped decoder is named by its recorded source.
    A decoder of one part of a sharded run is refused, as decode refuses such a table."""
    ref = load_whole_decoder(pre_path)
    decs = [load_whole_decoder(p) for p in others]
    if "-" in others and not labels:
        names = [provenance.recorded_label(d.attrs) if p == "-" else n for p, n, d in zip(others, names, decs)]
        checkpoint_labels(others, names)
    return ref, decs, names


def load_whole_decoder(path: str):
    """A decoder read back, refused when it is one part of a sharded run (not a cohort)."""
    dec = load_decoder(path)
    refuse_part(dec.attrs, dec.path)
    return dec


def load_panel(null_panel: str | None):
    """The --null-panel decoder (load_whole_decoder), or None."""
    return load_whole_decoder(null_panel) if null_panel else None


def decoder_identities(pre_path: str, ref, others: list, names: list, decs: list) -> dict:
    """What compare's and stats' provenance records of each decoder (provenance.checkpoint_identity)."""
    return {"reference": provenance.checkpoint_identity(pre_path, ref.attrs),
            "checkpoints": {n: provenance.checkpoint_identity(p, d.attrs) for p, n, d in zip(others, names, decs)}}


def declare_comparison(command: str, pre_path: str, ref, others: list, names: list, decs: list,
                       inputs: dict, params: dict) -> None:
    """Declare compare's and stats' provenance, the sidecar of the table they write: the
    decoders and the optional `inputs` given (role -> path; left out when not given) with
    sha256, the labels and `params`, what identifies each checkpoint (its decoder, the
    encoder it was embedded with, decode's small-sample verdict) for report, and the
    decoders' merged history."""
    provenance.declare(command, inputs={"reference": pre_path, "compared": others,
                                        **{role: path for role, path in inputs.items() if path}},
                       params={"labels": names, **params,
                               **decoder_identities(pre_path, ref, others, names, decs)},
                       history=provenance.merged_history(ref.attrs, *(d.attrs for d in decs)))


# ------------------------------------------------------------------ stability (compare, stats, report)

def stability_option():
    return typer.Option(None, "--stability", metavar="ICC.csv",
                        help="ICC per feature over perturbed replicates (radlens stability).")


def min_icc_option():
    return typer.Option(None, "--min-icc", metavar="ICC",
                        help="Leave features with a lower ICC (or none in --stability) out, e.g. 0.75.")


def read_icc(stability: str | None, min_icc: float | None):
    """--stability's table (None without it); --min-icc needs it and lies in [-1, 1]."""
    if min_icc is not None and not stability:
        raise UsageError("--min-icc needs --stability (the icc.csv of `radlens stability`)")
    if min_icc is not None and not -1.0 <= min_icc <= 1.0:
        raise UsageError(f"--min-icc {min_icc}: must lie in [-1, 1]")
    if not stability:
        return None
    return read_icc_table(stability)


# ------------------------------------------------------------------ inputs named by flag (report)

def _flag(role: str) -> str:
    return "--" + role.replace("_", "-")


def check_inputs(inputs: dict, files_only: dict) -> list:
    """The flags of `inputs` (role -> path, a list of paths, or None; the flag is --role)
    that read stdin (`-`): at most one, never a role of `files_only` (role -> why it must
    be a file); every other path given must be a file. Checked before any output is touched."""
    given = [(_flag(role), p) for role, path in inputs.items()
             for p in (path if isinstance(path, (list, tuple)) else [path])]
    piped = [flag for flag, path in given if path == "-"]
    if len(piped) > 1:
        raise UsageError(f"only one input can be `-` (stdin); {', '.join(piped)} all are")
    why = {_flag(role): text for role, text in files_only.items()}
    for flag, path in given:
        if path == "-" and flag in why:
            raise UsageError(f"{flag}: give a file ({why[flag]})")
        if path is not None and path != "-" and not os.path.isfile(path):
            raise RadlensError(f"{flag} file not found: {path}")
    return piped


def spool_stdin(inputs: dict, piped: list) -> dict:
    """`inputs` with the `-` of the flag in `piped` (check_inputs) replaced by the file stdin
    is spooled to (once; what reads it hashes the spooled bytes and shows it as stdin)."""
    if not piped:
        return inputs
    real = input_path("-", piped[0])
    pick = lambda p: real if p == "-" else p
    return {role: [pick(p) for p in path] if isinstance(path, (list, tuple)) else pick(path)
            for role, path in inputs.items()}
