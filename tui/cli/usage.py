"""Bad usage as SPEC wants it: one line on stderr naming the option, exit status 2.

click checks the command line; this module words its errors the way triagedesk always has
(`triagedesk route: error: argument --limit: must be at least 1, got 0 (see `triagedesk
route --help`)`), checks what click leaves to the caller (options that exclude each other,
every missing required option at once), and holds the value types that catch out-of-range
numbers at parse time: `--limit -1` used to mean "all but the last ticket", `--limit 0`
"no limit" in one place and "nothing" in another, `--ids ","` "every ticket".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.decorators import FC
from click_default_group import DefaultGroup

if TYPE_CHECKING:
    from tui.core.database_url import PgTarget

PROG = "triagedesk"


def _label(param: click.Parameter) -> str:
    """How an error names a parameter: `--limit`, or an argument's metavar (`FILE`)."""
    if isinstance(param, click.Option):
        return "/".join(param.opts)
    return param.metavar or param.name or "?"


def usage_line(exc: click.UsageError) -> str:
    """The one line that says what is wrong, for the command whose help would explain it."""
    ctx = exc.ctx
    prog = ctx.command_path if ctx is not None else PROG
    if isinstance(exc, click.NoSuchOption):
        prog, message = PROG, f"unrecognized arguments: {exc.option_name}"
    elif isinstance(exc, click.BadOptionUsage):
        problem = "expected one argument" if "requires" in exc.message else "does not take a value"
        message = f"argument {exc.option_name}: {problem}"
    elif isinstance(exc, click.MissingParameter) and exc.param is not None:
        message = f"the following arguments are required: {_label(exc.param)}"
    elif isinstance(exc, click.BadParameter) and exc.param is not None:
        message = f"argument {_label(exc.param)}: {exc.message}"
    else:
        message = exc.message
        if isinstance(exc, Unrecognized):
            prog = PROG
    return f"{prog}: error: {message} (see `{prog} --help`)"


class Unrecognized(click.UsageError):
    """Words no command takes; named against the whole program, as they always were."""


class Command(click.Command):
    """A click command that also refuses options named in `exclusive` together, names every
    missing required option at once, and calls leftover words unrecognized."""

    def __init__(self, *args: Any, exclusive: Sequence[str] = (), **kwargs: Any) -> None:
        kwargs.setdefault("context_settings", {})["allow_extra_args"] = True
        super().__init__(*args, **kwargs)
        self.exclusive = tuple(exclusive)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return self._parse_args(ctx, args)
        except click.UsageError as exc:
            if exc.ctx is None:  # click's parser leaves some errors without their command
                exc.ctx = ctx
            raise

    def _parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            opts, _, order = self.make_parser(ctx).parse_args(args=list(args))
        except click.NoSuchOption:
            raise Unrecognized(
                "unrecognized arguments: " + self._leftovers(ctx, args), ctx
            ) from None
        given = [p for p in dict.fromkeys(order) if p.name in self.exclusive]
        if len(given) > 1:
            raise click.UsageError(
                f"argument {_label(given[1])}: not allowed with argument {_label(given[0])}", ctx
            )
        try:
            rest = super().parse_args(ctx, args)
        except click.MissingParameter:
            missing = [
                _label(p)
                for p in self.get_params(ctx)
                if p.required and (p.name not in opts or p.value_is_missing(opts[p.name]))
            ]
            raise click.UsageError(
                "the following arguments are required: " + ", ".join(missing), ctx
            ) from None
        if rest:
            raise Unrecognized("unrecognized arguments: " + " ".join(rest), ctx)
        return rest

    def _leftovers(self, ctx: click.Context, args: list[str]) -> str:
        """Every word the command does not take (`--db x`, as argparse named them), for a
        command without positional arguments; else the first unknown option alone."""
        if any(isinstance(p, click.Argument) for p in self.params):
            try:
                self.make_parser(ctx).parse_args(args=list(args))
            except click.NoSuchOption as exc:
                return exc.option_name
        ctx.ignore_unknown_options = True
        try:
            _, rest, _ = self.make_parser(ctx).parse_args(args=list(args))
        finally:
            ctx.ignore_unknown_options = False
        return " ".join(rest)


class Group(DefaultGroup):
    """posting's house pattern: the bare command (global options only, or none) runs the
    default (hidden) command, the TUI;
    any other word must name a command (`frobnicate` is an invalid choice, not an argument of
    the TUI), and `triagedesk --help` lists the commands in SPEC's order."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # Bare is "no command word", with or without global options (`--db x --watch d`):
        # DefaultGroup itself only catches an empty command line.
        _, words, _ = self.make_parser(ctx).parse_args(args=list(args))
        ctx.meta["triagedesk.bare"] = not words
        if not words and self.default_cmd_name is not None:
            args = [*args, self.default_cmd_name]
        return super().parse_args(ctx, args)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == self.default_cmd_name and ctx.meta.get("triagedesk.bare"):
            return super().get_command(ctx, cmd_name)
        if cmd_name in self.list_commands(ctx):
            return self.commands[cmd_name]
        if cmd_name.startswith("-"):  # DefaultGroup lets unknown options through to here
            raise Unrecognized(f"unrecognized arguments: {cmd_name}", ctx)
        choices = ", ".join(repr(name) for name in self.list_commands(ctx))
        raise click.UsageError(
            f"argument COMMAND: invalid choice: {cmd_name!r} (choose from {choices})", ctx
        )

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name, cmd in self.commands.items() if not cmd.hidden]


class PathType(click.ParamType[Path]):
    """A path as typed, like `pathlib.Path(text)`: whether it exists is the command's business."""

    name = "path"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path:
        return value if isinstance(value, Path) else Path(value)


class DatabaseType(click.ParamType["Path | PgTarget"]):
    """`--db`: a SQLite file path as typed, or a `postgresql://` URL (kept whole: a `Path`
    would fold its `//`). A URL with a password is bad usage, named without the password."""

    name = "path or url"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> Path | PgTarget:
        from tui.core.database_url import PgTarget, is_database_url
        from tui.core.store.errors import StoreError

        if isinstance(value, Path | PgTarget):
            return value
        if is_database_url(str(value)):
            try:
                return PgTarget(str(value))
            except StoreError as exc:
                self.fail(str(exc), param, ctx)
        return Path(value)


class Integer(click.ParamType[int]):
    """Any whole number (`--seed`)."""

    name = "int"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return int(value)
        except ValueError:
            self.fail(f"invalid int value: {value!r}", param, ctx)


class WholeNumber(click.ParamType[int]):
    """A whole number from `low` (to `high`); out of range is bad usage."""

    name = "whole number"

    def __init__(self, low: int, high: int | None = None) -> None:
        self.low, self.high = low, high

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            number = value
        else:
            try:
                number = int(value)
            except ValueError:
                self.fail(f"expected a whole number, got {str(value)[:40]!r}", param, ctx)
        if number < self.low or (self.high is not None and number > self.high):
            span = (
                f"at least {self.low}" if self.high is None else f"from {self.low} to {self.high}"
            )
            self.fail(f"must be {span}, got {number}", param, ctx)
        return number


def parse_number(
    kind: click.ParamType[Any], value: Any, param: click.Parameter | None, ctx: click.Context | None
) -> tuple[float, str]:
    """`value` as a float and as typed (for the message), or bad usage naming it."""
    text = str(value)
    try:
        return float(value), text
    except ValueError:
        kind.fail(f"expected a number, got {text[:40]!r}", param, ctx)


class Share(click.ParamType[float]):
    """A finite number within [0, 1] (or [0, 1) with `below_one`)."""

    name = "number"

    def __init__(self, *, below_one: bool = False) -> None:
        self.below_one = below_one

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        number, text = parse_number(self, value, param, ctx)
        top_ok = number < 1.0 if self.below_one else number <= 1.0
        if not (math.isfinite(number) and number >= 0.0 and top_ok):
            span = "[0, 1)" if self.below_one else "[0, 1]"
            self.fail(f"must be within {span}, got {text[:40]!r}", param, ctx)
        return number


class PositiveNumber(click.ParamType[float]):
    """A finite number above zero (`--learning-rate 2e-4`)."""

    name = "number"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        number, text = parse_number(self, value, param, ctx)
        if not (math.isfinite(number) and number > 0.0):
            self.fail(f"must be a number above 0, got {text[:40]!r}", param, ctx)
        return number


class IdList(click.ParamType[list[str]]):
    """`--ids`: comma-separated ticket ids, each stripped, repeats dropped (first order kept).
    A list that names no id (`--ids ","`, `--ids ""`) is bad usage: it used to fall back to
    routing every unrouted ticket."""

    name = "ticket ids"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> list[str]:
        if isinstance(value, list):
            return value
        ids = list(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
        if not ids:
            self.fail(f"expected comma-separated ticket ids, got {value!r}", param, ctx)
        return ids


class Choice(click.Choice[str]):
    """One of a few words; a wrong one is named with the words it could have been."""

    def get_invalid_choice_message(self, value: Any, ctx: click.Context | None) -> str:
        choices = ", ".join(repr(choice) for choice in self.choices)
        return f"invalid choice: {value!r} (choose from {choices})"


def value_option(*decls: str, **kwargs: Any) -> Callable[[FC], FC]:
    """`click.option` for an option that takes a value, its metavar the option's name in
    capitals (`--limit LIMIT`), as the help has always shown it."""
    if "metavar" not in kwargs:
        long = next(d for d in decls if d.startswith("--"))
        kwargs["metavar"] = long[2:].upper().replace("-", "_")
    return click.option(*decls, **kwargs)


DEVICES = ("auto", "cpu", "cuda")


def device_option(description: str) -> Callable[[FC], FC]:
    """`--device auto|cpu|cuda` (default auto), shared by `train` and `finetune`."""
    return value_option(
        "--device",
        type=Choice(list(DEVICES)),
        default="auto",
        metavar="{" + ",".join(DEVICES) + "}",
        help=description,
    )


def flag(*decls: str, **kwargs: Any) -> Callable[[FC], FC]:
    """`click.option` for an on/off switch, off by default."""
    return click.option(*decls, is_flag=True, default=False, **kwargs)
