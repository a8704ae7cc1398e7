"""The one user-facing exception type and radlens's exit codes (0 ok, 1 data error, 2 usage, 130
interrupted, 143 terminated; README "Exit codes")."""

import json

EXIT_OK = 0
EXIT_DATA = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class RadlensError(Exception):
    """A problem the user can fix; printed as one line, never a traceback.

    The message should name the file, case or column at fault.
    """

    exit_code = EXIT_DATA

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(RadlensError):
    """Bad options or arguments (exit 2)."""

    exit_code = EXIT_USAGE


class Terminated(KeyboardInterrupt):
    """SIGTERM (scancel, a job's time limit): unwinds like Ctrl-C, so temporaries are removed."""


class ParameterError(UsageError):
    """A bad parameter value, raised by library code that does not know the command line.

    The message names parameters as `{name}` fields: str(error) shows the plain names
    ("epochs must be at least 1 (got 0)"); `flagged()` shows command-line flags
    ("--epochs must be at least 1 (got 0)"), which is what the command wrapper prints.
    """

    def __init__(self, template: str = "", *params: str, exit_code: int | None = None, plain: dict | None = None,
                 flags: dict | None = None, message: str | None = None):
        """plain: how str() shows a parameter where its name alone reads wrong ({"no_resume": "resume=False"});
        flags: how flagged() shows one that is more than its flag ({"kernel": "--kernel linear"}).
        message: a template by another name -- a torch DataLoader re-raises a worker's exception
        as type(e)(message=traceback text) when the class has a `message` attribute, as this one does."""
        if message is not None and not template:
            template = message
        self.template, self.params, self.flags = template, tuple(params), dict(flags or {})
        self.plain = dict(plain or {})
        super().__init__(_render(template, {p: self.plain.get(p, p) for p in self.params}), exit_code)

    def flagged(self, flags: dict | None = None) -> str:
        """The message with each parameter as its flag (`--name-with-dashes` unless `flags` says)."""
        return _flagged(self.template, self.params, {**self.flags, **(flags or {})})

    def wire_note(self) -> str:
        """One line that carries the error's fields through a process that passes on only
        its traceback's text (a torch DataLoader worker re-raises type(e)(traceback text)):
        added as an exception note, read back by `from_traceback_text`."""
        return WIRE_PREFIX + json.dumps({"template": self.template, "params": list(self.params),
                                         "plain": self.plain, "flags": self.flags, "exit_code": self.exit_code},
                                        sort_keys=True)

    @classmethod
    def from_traceback_text(cls, text: str) -> "ParameterError | None":
        """The ParameterError whose wire_note is in `text` (a worker's traceback), else None."""
        for line in reversed(str(text).splitlines()):
            if line.startswith(WIRE_PREFIX):
                try:
                    rec = json.loads(line[len(WIRE_PREFIX):])
                    return cls(rec["template"], *rec["params"], exit_code=rec["exit_code"], plain=rec["plain"],
                               flags=rec["flags"])
                except (ValueError, KeyError, TypeError):
                    return None
        return None

    def message(self, prefix: str = "") -> "ParameterMessage":
        """The error's first line as a ParameterMessage (a str that keeps its parameters, also
        when pickled to another process): what a worker reports for a failed item."""
        return ParameterMessage(prefix + self.template.strip().splitlines()[0], *self.params, plain=self.plain,
                                flags=self.flags)


WIRE_PREFIX = "radlens-parameter-error: "


class ParameterMessage(str):
    """A warning naming parameters as `{name}` fields, the way ParameterError does for errors.

    The string itself shows the plain names (what a Python caller's `warn` callback gets);
    `flagged()` shows command-line flags, which is what `log.warn` prints.
    """

    def __new__(cls, template: str, *params: str, plain: dict | None = None, flags: dict | None = None):
        obj = super().__new__(cls, _render(template, {p: (plain or {}).get(p, p) for p in params}))
        obj.template, obj.params, obj.flags = template, tuple(params), dict(flags or {})
        return obj

    def flagged(self, flags: dict | None = None) -> str:
        return _flagged(self.template, self.params, {**getattr(self, "flags", {}), **(flags or {})})


def _render(template: str, names: dict) -> str:
    for p, shown in names.items():
        template = template.replace("{" + p + "}", shown)
    return template


def _flagged(template: str, params: tuple, flags: dict | None) -> str:
    flags = flags or {}
    return _render(template, {p: flags.get(p, "--" + p.replace("_", "-")) for p in params})


def check_choice(value, choices, param: str) -> None:
    """ParameterError unless `value` is one of `choices` (the one enum check of the library)."""
    if value not in choices:
        raise ParameterError(f"{{{param}}} must be one of {', '.join(choices)}, not {value!r}", param)
