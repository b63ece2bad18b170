# Types for click-default-group 1.2.4, which ships none: the part triagedesk uses.
from typing import Any

import click

class DefaultGroup(click.Group):
    default_cmd_name: str | None
    default_if_no_args: bool
    def __init__(
        self,
        *args: Any,
        default: str | None = None,
        default_if_no_args: bool = False,
        **kwargs: Any,
    ) -> None: ...
    def set_default_command(self, command: click.Command) -> None: ...
