"""The TOML config: frozen pydantic settings, validated whole and strictly, with errors that
name file and key.

- `options`: what a `[backends.NAME]` block holds, one `Options` model per backend type.
- `settings`: `Settings` (labels, routing, backends) and every-problem-at-once validation.
- `references`: cross-entry checks (names that resolve, cascade cycles, non-finite numbers).
- `loading`: reading the file, the defaults, and one `file: key: problem` line per problem.
- `errors`: `ConfigError` and how names and keys are quoted in problem lines.
"""

from tui.core.config.errors import ConfigError
from tui.core.config.loading import (
    DEFAULT_BACKENDS,
    _build,
    default_settings,
    format_problems,
    load_settings,
    read_config_text,
)
from tui.core.config.options import (
    BACKEND_TYPE_KEYS,
    BUILTIN_OPTIONS,
    COMMON_KEYS,
    DEFAULT_CPU_USD_PER_HOUR,
    AnthropicOptions,
    BackendConfig,
    CascadeOptions,
    HTTPOptions,
    LlamaCppLocalOptions,
    LlamaCppOptions,
    OllamaOptions,
    OpenAIOptions,
    SpecialistOptions,
    TypeKeys,
)
from tui.core.config.settings import RoutingConfig, Settings

__all__ = [
    "BACKEND_TYPE_KEYS",
    "BUILTIN_OPTIONS",
    "COMMON_KEYS",
    "DEFAULT_BACKENDS",
    "DEFAULT_CPU_USD_PER_HOUR",
    "AnthropicOptions",
    "BackendConfig",
    "CascadeOptions",
    "ConfigError",
    "HTTPOptions",
    "LlamaCppLocalOptions",
    "LlamaCppOptions",
    "OllamaOptions",
    "OpenAIOptions",
    "RoutingConfig",
    "Settings",
    "SpecialistOptions",
    "TypeKeys",
    "_build",
    "default_settings",
    "format_problems",
    "load_settings",
    "read_config_text",
]
