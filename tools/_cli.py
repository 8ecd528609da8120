"""The command lines' shared layer: how every edge-* command builds its parser, checks its input, stays
quiet and fails.

- `make_parser` / `add_command`: a description, an epilog with real examples and the exit codes, help on
  every flag (checked by a test), `--version`, `--verbose`; a usage error is one line naming the flag, exit 2.
- validators for argparse `type=` (positive numbers, ranges, existing files and folders, HOST:PORT): a bad
  value is refused before any work, naming the flag and what was expected.
- `run`: the body of a command under one policy: `EdgeError` -> "error: ..." on one line, exit 2; any other
  exception -> one line naming the log file that holds the traceback, exit 70; Ctrl-C -> exit 130.
- quiet by default: what libraries print (TensorFlow/absl/oneDNN/XNNPACK lines written by C++ straight to
  file descriptors 1 and 2, other packages' Python logging and warnings) goes to the command's log file;
  `--verbose` shows it. Our own lines (and ecgedge's warnings) still reach the terminal.

Stdlib only at import time: `edge-run` and `edge-sim` run on a runtime-only install.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import math
import os
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

EXIT_OK = 0
EXIT_FAILED = 1          # the command ran and its verdict is negative (edge-hil: a gate was crossed)
EXIT_USAGE = 2           # bad input (flag, file, model, target, data) or a refused/failed operation
EXIT_SOFTWARE = 70       # an unexpected internal error (sysexits EX_SOFTWARE): the log file has the traceback
EXIT_INTERRUPTED = 130   # Ctrl-C

EXIT_TEXT = {
    EXIT_OK: "success",
    EXIT_USAGE: "bad input or a refused operation: one line on stderr names the flag or file and what was expected",
    EXIT_SOFTWARE: "an unexpected internal error: one line on stderr names the log file that holds the traceback",
}

QUIET_NOTE = ("Library output (TensorFlow, absl, LiteRT, ...) goes to a log file under {logdir}; "
              "--verbose shows it.")


def version_string(prog: str) -> str:
    from ecgedge import __version__
    return f"{prog} (ecgedge) {__version__}"


def log_dir() -> Path:
    """Where commands keep their log files: $ECGEDGE_LOG_DIR, else <ECGEDGE_CACHE or ~/.cache/ecgedge>/logs."""
    if os.environ.get("ECGEDGE_LOG_DIR"):
        return Path(os.environ["ECGEDGE_LOG_DIR"])
    base = os.environ.get("ECGEDGE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ecgedge")
    return Path(base) / "logs"


# ------------------------------------------------------------------------------------------ the parser

class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's and epilog's own line breaks; wraps flag help at the terminal (<= 100)."""

    def __init__(self, prog):
        import shutil
        width = max(60, min(100, shutil.get_terminal_size((80, 24)).columns))
        super().__init__(prog, max_help_position=32, width=width)


class CliParser(argparse.ArgumentParser):
    """argparse with a one-line usage error (exit 2) that names the flag and points at --help."""

    def error(self, message):  # noqa: D401 - argparse's signature
        self.exit(EXIT_USAGE, f"error: {message} (see {self.prog} --help)\n")


def epilog(examples, exit_codes: dict[int, str] | None = None, notes: str | None = None) -> str:
    """The --help epilog: an "examples:" section (command, then what it does), the exit codes, notes."""
    lines = ["examples:"]
    for cmd, what in examples:
        lines.append(f"  {cmd}")
        if what:
            lines.append(f"      {what}")
    codes = dict(EXIT_TEXT)
    codes.update(exit_codes or {})
    lines += ["", "exit codes:"]
    lines += [f"  {code:<3} {text}" for code, text in sorted(codes.items())]
    if notes:
        lines += ["", notes]
    return "\n".join(lines)


def make_parser(prog: str, description: str, examples, exit_codes: dict[int, str] | None = None,
                notes: str | None = None, verbose: bool = True) -> CliParser:
    """A command's parser: description, epilog (examples, exit codes, notes), --version and --verbose."""
    p = CliParser(prog=prog, description=description.strip(), formatter_class=_Formatter,
                  epilog=epilog(examples, exit_codes, notes if notes is not None else _quiet_note()))
    p.add_argument("--version", action="version", version=version_string(prog),
                   help="print the version and exit")
    if verbose:
        p.add_argument("--verbose", action="store_true",
                       help="also show what libraries print (TensorFlow, absl, LiteRT); default: to the log file")
    return p


def add_command(sub, name: str, summary: str, description: str, examples, exit_codes: dict[int, str] | None = None,
                notes: str | None = None) -> CliParser:
    """A sub-command (`edge-hil run`, `edge-sim serve`) with its own description, examples and exit codes."""
    p = sub.add_parser(name, help=summary, description=description.strip(), formatter_class=_Formatter,
                       epilog=epilog(examples, exit_codes, notes if notes is not None else _quiet_note()))
    p.add_argument("--verbose", action="store_true",
                   help="also show what libraries print (TensorFlow, absl, LiteRT); default: to the log file")
    return p


def _quiet_note() -> str:
    home = os.path.expanduser("~")
    d = str(log_dir())
    return QUIET_NOTE.format(logdir=d.replace(home, "~", 1) if d.startswith(home) else d)


def undocumented_flags(parser: argparse.ArgumentParser) -> list[str]:
    """Flags without help text (a test keeps this empty for every command and sub-command)."""
    out = []
    for action in parser._actions:  # argparse keeps no public list
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += [f"{name} {flag}" for flag in undocumented_flags(sub)]
        elif action.help in (None, "") and not isinstance(action, argparse._HelpAction):
            out.append("/".join(action.option_strings) or action.dest)
    return out


# ------------------------------------------------------------------------------------------ validators

def _fail(expected: str, text) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")


def _number(text, kind, expected):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise _fail(expected, text) from None
    if kind is float and not math.isfinite(value):
        raise _fail(expected, text)
    return value


def int_range(low: int | None = None, high: int | None = None):
    """argparse type: a whole number in [low, high] (either end open when None)."""
    expected = _range_words("a whole number", low, high)

    def check(text):
        value = _number(text, int, expected)
        if (low is not None and value < low) or (high is not None and value > high):
            raise _fail(expected, text)
        return value
    check.__name__ = "int"
    return check


def float_range(low: float | None = None, high: float | None = None, low_open: bool = False,
                high_open: bool = False):
    """argparse type: a finite number in the range (low_open: > low instead of >= low)."""
    expected = _range_words("a number", low, high, low_open, high_open)

    def check(text):
        value = _number(text, float, expected)
        if low is not None and (value <= low if low_open else value < low):
            raise _fail(expected, text)
        if high is not None and (value >= high if high_open else value > high):
            raise _fail(expected, text)
        return value
    check.__name__ = "float"
    return check


def _range_words(what, low, high, low_open=False, high_open=False) -> str:
    g = lambda v: f"{v:g}" if isinstance(v, float) else f"{v:,}"  # noqa: E731
    if low is not None and high is not None:
        return f"{what} in {'(' if low_open else '['}{g(low)}, {g(high)}{')' if high_open else ']'}"
    if low is not None:
        return f"{what} {'>' if low_open else '>='} {g(low)}"
    if high is not None:
        return f"{what} {'<' if high_open else '<='} {g(high)}"
    return what


positive_int = int_range(1)
nonneg_int = int_range(0)
seed = int_range(0, 2**32 - 1)
positive_float = float_range(0.0, low_open=True)
nonneg_float = float_range(0.0)
probability = float_range(0.0, 1.0)


def existing_file(text) -> str:
    """argparse type: a file that exists (returned as given)."""
    path = Path(text).expanduser()
    if not path.is_file():
        raise _fail("an existing file" + (" (that is a folder)" if path.is_dir() else ""), str(text))
    return str(path)


def existing_dir(text) -> str:
    """argparse type: a folder that exists (returned as given)."""
    path = Path(text).expanduser()
    if not path.is_dir():
        raise _fail("an existing folder" + (" (that is a file)" if path.exists() else ""), str(text))
    return str(path)


def existing_path(text) -> str:
    """argparse type: a file or folder that exists (returned as given)."""
    path = Path(text).expanduser()
    if not path.exists():
        raise _fail("an existing file or folder", str(text))
    return str(path)


def file_in_existing_dir(text) -> str:
    """argparse type: a file path whose folder exists (the file itself need not)."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise _fail("a file path (that is a folder)", str(text))
    if not path.parent.is_dir():
        raise _fail(f"a file in an existing folder ({path.parent} does not exist)", str(text))
    return str(path)


def as_path(check):
    """argparse type: `check`, then pathlib.Path (for commands that work with Path objects)."""
    def convert(text):
        return Path(check(text))
    convert.__name__ = getattr(check, "__name__", "path")
    return convert


def host_port(text) -> tuple[str, int]:
    """argparse type: HOST:PORT (PORT 0..65535; an empty HOST means 127.0.0.1)."""
    host, sep, port = str(text).rpartition(":")
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not sep or not 0 <= number <= 65535:
        raise _fail("HOST:PORT with PORT in [0, 65535]", text)
    return (host or "127.0.0.1", number)


def check_value(parser: argparse.ArgumentParser, dest: str, value, origin: str):
    """Validate a value that did not come from the command line (a --config file) with the flag's own
    type and choices; ConfigError naming the origin and the flag when it is bad."""
    from ecgedge.errors import ConfigError

    action = next((a for a in parser._actions if a.dest == dest), None)
    if action is None or value is None:
        return value
    flag = action.option_strings[-1] if action.option_strings else dest
    if action.nargs == 0:  # store_true / store_false
        if not isinstance(value, bool):
            raise ConfigError(f"{origin}: {flag} {value!r}: expected true or false")
        return value
    if callable(action.type):
        try:
            value = action.type(value if isinstance(value, str) else str(value))
        except argparse.ArgumentTypeError as e:
            raise ConfigError(f"{origin}: {flag}: {e}") from None
        except (TypeError, ValueError):
            raise ConfigError(f"{origin}: {flag} {value!r}: not a valid {action.type.__name__}") from None
    if action.choices is not None and value not in action.choices:
        raise ConfigError(f"{origin}: {flag} {value!r}: expected one of {', '.join(map(str, action.choices))}")
    return value


# ------------------------------------------------------------------------------------------ quiet output

_NOISY_LOGGERS = ("tensorflow", "absl", "h5py", "jax", "onnx", "onnxruntime", "bleak", "bumble", "matplotlib",
                  "PIL", "asyncio", "urllib3")


def _is_ours(category, filename: str) -> bool:
    """A warning raised by ecgedge itself (shown), not by a library (logged)."""
    if getattr(category, "__module__", "").startswith("ecgedge"):
        return True
    path = filename.replace(os.sep, "/")
    if "/site-packages/" in path or "/dist-packages/" in path:
        return False
    root = str(Path(__file__).resolve().parents[1]).replace(os.sep, "/")
    return path.startswith(root + "/")


# Python code allowed to write to the terminal while output is quiet: ours, and what prints for us (rich,
# argparse, logging's handlers for ecgedge records). Anything else that writes to sys.stdout/sys.stderr from
# Python (Keras's "Saved artifact at ..." listing, tqdm bars of other packages) goes to the log file.
_OUR_WRITERS = ("ecgedge", "rich", "__main__", "argparse", "logging")


class _Stream(io.TextIOWrapper):
    """A text stream over a duplicate of the terminal's descriptor (what sys.stdout/err become while fds
    1 and 2 are redirected to the log file); writes from other packages' Python code go to `log`."""

    log = None

    def write(self, text):
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if self.log is not None and not caller.startswith(_OUR_WRITERS):
            return self.log.write(text)
        return super().write(text)


@dataclass
class Output:
    """What `quiet_output` set up: the log file and whether library output goes there."""
    log_path: Path
    verbose: bool

    def write_log(self, text: str) -> None:
        try:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(text if text.endswith("\n") else text + "\n")
        except OSError:
            pass


def new_log_path(prog: str) -> Path:
    """A fresh log file name for one run of `prog` (old ones beyond the newest 30 are removed)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for folder in (log_dir(), Path(os.environ.get("TMPDIR", "/tmp")) / "ecgedge-logs"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{prog}-{stamp}-{os.getpid()}.log"
            n = 0
            while path.exists():  # several runs in one process and second (tests)
                n += 1
                path = folder / f"{prog}-{stamp}-{os.getpid()}-{n}.log"
            path.touch()
        except OSError:
            continue
        with contextlib.suppress(OSError):
            old = sorted(folder.glob(f"{prog}-*.log"), key=lambda p: p.stat().st_mtime)[:-30]
            for p in old:
                p.unlink()
        return path
    return Path(os.devnull)


def _redirect_fds(log_path: Path):
    """Point fds 1 and 2 at the log file; (saved fds, rebuilt terminal streams, log fd), or None when the
    descriptors cannot be redirected (nothing changed then)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # INFO lines are noise even in the log
    for s in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            s.flush()
    dups: dict[int, int] = {}
    new_streams = {}
    log_fd = -1
    try:
        log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        for fd, stream in ((1, sys.stdout), (2, sys.stderr)):
            dups[fd] = os.dup(fd)
            if _fileno(stream) == fd:  # the real terminal stream: rebuild it over the duplicate
                new_streams[fd] = _Stream(os.fdopen(os.dup(dups[fd]), "wb", buffering=0), encoding=_enc(stream),
                                          errors="backslashreplace", line_buffering=True, write_through=True)
        for fd in (1, 2):
            os.dup2(log_fd, fd)
    except OSError:
        for fd, d in dups.items():
            os.dup2(d, fd)
            os.close(d)
        if log_fd >= 0:
            os.close(log_fd)
        return None
    return dups, new_streams, log_fd


@contextlib.contextmanager
def quiet_output(prog: str, verbose: bool = False):
    """Route library output to the run's log file (unless `verbose`); yields an `Output`.

    File descriptors 1 and 2 point at the log file, so what C++ code (TensorFlow, absl, oneDNN, LiteRT's
    XNNPACK delegate) and child processes print lands there; sys.stdout and sys.stderr, when they wrote to
    those descriptors, are rebuilt over duplicates of the terminal's, so our own output is unchanged.
    Python logging of other packages goes to the log; ecgedge's own warnings (logging and `warnings`)
    still print, one line each. Everything is restored on exit; an empty log file is removed.
    """
    log_path = new_log_path(prog)
    out = Output(log_path=log_path, verbose=verbose)
    redirected = None if verbose or str(log_path) == os.devnull else _redirect_fds(log_path)
    if redirected is None:
        try:
            with _our_logging(None, verbose=True):
                yield out
        finally:
            _drop_if_empty(log_path)
        return
    dups, new_streams, log_fd = redirected
    saved_streams = (sys.stdout, sys.stderr)
    if 1 in new_streams:
        sys.stdout = new_streams[1]
    if 2 in new_streams:
        sys.stderr = new_streams[2]
    log_file = open(log_path, "a", encoding="utf-8", buffering=1)
    for stream in new_streams.values():
        stream.log = log_file
    old_showwarning = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if _is_ours(category, filename):
            print(f"warning: {message}", file=sys.stderr)
        else:
            log_file.write(warnings.formatwarning(message, category, filename, lineno, line))

    warnings.showwarning = showwarning
    try:
        with _our_logging(log_file, verbose=False):
            yield out
    finally:
        warnings.showwarning = old_showwarning
        for s in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                s.flush()
        for fd in (1, 2):
            os.dup2(dups[fd], fd)
            os.close(dups[fd])
        os.close(log_fd)
        sys.stdout, sys.stderr = saved_streams
        for s in new_streams.values():
            with contextlib.suppress(Exception):
                s.close()
        log_file.close()
        _drop_if_empty(log_path)


def _fileno(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


def _enc(stream) -> str:
    return getattr(stream, "encoding", None) or "utf-8"


def _drop_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_file() and path.stat().st_size == 0:
            path.unlink()


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (it changes while output is quiet)."""

    def __init__(self):
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


@contextlib.contextmanager
def _our_logging(log_file, verbose: bool):
    """Quiet: every logger's records go to the log file, and ecgedge's WARNING and above also to stderr, one
    line each. Verbose: records go to stderr (a root handler, unless one is already installed)."""
    root = logging.getLogger()
    ours = logging.getLogger("ecgedge")
    added: list[tuple[logging.Logger, logging.Handler]] = []
    swapped = {}
    if log_file is not None:
        mine = _StderrHandler()
        mine.setLevel(logging.WARNING)
        mine.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        to_log = logging.StreamHandler(log_file)
        to_log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        added += [(ours, mine), (root, to_log)]
        for name in _NOISY_LOGGERS:  # a library that installed its own stderr handler earlier in this process
            lg = logging.getLogger(name)
            if lg.handlers:
                swapped[name] = (list(lg.handlers), lg.propagate)
                lg.handlers = []
                lg.propagate = True
    elif not root.handlers:
        to_err = _StderrHandler()
        to_err.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        added.append((root, to_err))
    for logger, handler in added:
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger, handler in added:
            logger.removeHandler(handler)
        for name, (handlers, propagate) in swapped.items():
            lg = logging.getLogger(name)
            lg.handlers, lg.propagate = handlers, propagate


# ------------------------------------------------------------------------------------------ running a command

def run(prog: str, body, verbose: bool = False, quiet: bool = True) -> int:
    """Run `body()` (returns an exit code or None) under the common policy; returns the exit code.

    EdgeError -> "error: <first line>" on stderr (the rest, if any, in the log file), exit 2.
    Any other exception -> one line naming the log file with the traceback, exit 70. Ctrl-C -> exit 130.
    With `quiet`, library output goes to the log file for the whole run (see `quiet_output`).
    """
    from ecgedge.errors import EdgeError

    ctx = quiet_output(prog, verbose=verbose) if quiet else _no_quiet(prog)
    with ctx as out:
        try:
            code = body()
            return EXIT_OK if code is None else int(code)
        except EdgeError as e:
            first, _, rest = str(e).partition("\n")
            if rest.strip():
                out.write_log(f"{prog}: error: {e}")
                print(f"error: {first} (details in {out.log_path})", file=sys.stderr)
            else:
                print(f"error: {first}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except SystemExit:
            raise
        except BaseException as e:  # noqa: BLE001 - the one place that catches everything
            out.write_log(f"{prog}: unexpected error\n{traceback.format_exc()}")
            what = str(e).splitlines()[0] if str(e) else ""
            print(f"error: unexpected {type(e).__name__}{': ' + what if what else ''} "
                  f"(a bug; traceback in {out.log_path})", file=sys.stderr)
            return EXIT_SOFTWARE


@contextlib.contextmanager
def _no_quiet(prog: str):
    path = new_log_path(prog)
    try:
        yield Output(log_path=path, verbose=True)
    finally:
        _drop_if_empty(path)
