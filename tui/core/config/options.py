"""What a `[backends.NAME]` block may hold: one pydantic `Options` model per backend type.

Every model subclasses `BackendConfig`, which holds the keys every backend takes (limits and
prices), so code that handles any backend (costs, the pickers, the CLI listing) reads those
without knowing the type. A built-in type's model forbids every other key (`extra="forbid"`):
a key its backend does not read would do nothing, so it is an error. Its required keys have
no default, so a missing one is reported by name.

`BackendConfig.model_validate(block)` gives the block's own type's model (see
`options_class`); a plugin type whose backend declares no `Options` keeps
the base model, whose extra keys are the plugin's own (read with `getattr` or `model_extra`).

The models live here, in the core, rather than in the backend modules: loading a config must
not import httpx, the vendor SDKs or llama.cpp. Each built-in backend class points at its
model (`Options = OpenAIOptions`), and a test checks that it is the one listed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ModelWrapValidatorHandler, model_validator

from tui.core.backend_types import BackendLoadError, available_types, load_class

DEFAULT_CPU_USD_PER_HOUR = 0.04
"""A small cloud vCPU hour (on-demand general-purpose instances list $0.03-0.05 per vCPU)."""


class BackendConfig(BaseModel):
    """The keys every backend takes; the base of each type's `Options`.

    Validating a block through this class dispatches on its `type`, so one call serves the
    config loader, tests and benchmarks alike."""

    model_config = ConfigDict(frozen=True, extra="allow", allow_inf_nan=False)

    model_file_key: ClassVar[str | None] = None
    """The key that names a model file, for types that read one (checked to be no folder)."""

    name: str = ""
    type: str
    timeout_s: float = Field(default=30.0, gt=0)
    max_concurrency: int = Field(default=8, ge=1)
    adaptive_concurrency: bool = True
    """Learn how many calls the backend takes at once, up to `max_concurrency`
    (`backends.limiter`); false keeps `max_concurrency` calls in flight whatever happens."""
    max_retries: int = Field(default=3, ge=0)
    input_usd_per_mtok: float | None = Field(default=None, ge=0)
    output_usd_per_mtok: float | None = Field(default=None, ge=0)
    cached_input_usd_per_mtok: float | None = Field(default=None, ge=0)
    gpu_usd_per_hour: float | None = Field(default=None, ge=0)
    gpu_parallel_slots: int = Field(default=1, ge=1)
    """Tickets the GPU serves at once; a ticket's GPU cost is its latency share of one slot."""
    max_prompt_chars: int = Field(default=6000, ge=200)

    def __new__(cls, *args: Any, **data: Any) -> BackendConfig:
        """`BackendConfig(type="openai", ...)` builds an `OpenAIOptions`, as `model_validate`
        does (Python then runs that class's `__init__`, which validates)."""
        target = _options_for(data.get("type")) if cls is BackendConfig else None
        return super().__new__(target or cls)

    @model_validator(mode="wrap")
    @classmethod
    def _as_its_type(cls, data: Any, handler: ModelWrapValidatorHandler[BackendConfig]) -> Any:
        """A block validated through the base becomes its own type's `Options`."""
        options = (
            _options_for(data.get("type"))
            if cls is BackendConfig and isinstance(data, dict)
            else None
        )
        return options.model_validate(data) if options is not None else handler(data)

    @property
    def model_name(self) -> str:
        """What to show as the model: the configured one, or the file's stem, or the type."""
        extra = self.model_extra or {}  # a plugin's own keys
        model, path = extra.get("model"), extra.get("model_path")
        if isinstance(model, str) and model:
            return model
        if isinstance(path, str) and path:
            return Path(path).stem
        return self.type

    @property
    def is_self_hosted(self) -> bool:
        return self.gpu_usd_per_hour is not None


def _options_for(kind: object) -> type[BackendConfig] | None:
    """The model a block of type `kind` validates as, when it is not the base itself."""
    if not isinstance(kind, str):
        return None
    options = options_class(kind)
    return options if options is not BackendConfig else None


class _Strict(BackendConfig):
    """A built-in type: exactly its keys."""

    model_config = ConfigDict(extra="forbid")

    @property
    def model_name(self) -> str:
        model = getattr(self, "model", None)
        return model if isinstance(model, str) and model else self.type


class SpecialistOptions(_Strict):
    """`type = "specialist"`: the trained model on this machine."""

    model_file_key: ClassVar[str | None] = "path"
    path: str | None = None
    """Specialist model file; defaults to the data dir's specialist."""
    cpu_usd_per_hour: float | None = Field(default=None, ge=0)


class _Chat(_Strict):
    """Keys of the backends that send the shared prompt to a model."""

    model: str | None = None
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    stream: bool = True


class HTTPOptions(_Chat):
    """Keys of the backends that speak HTTP with httpx (OpenAI-compatible, Anthropic,
    llama.cpp server)."""

    base_url: str | None = None
    api_key_env: str | None = None
    keyring_service: str | None = None
    """Optional OS keyring service to read the key from when the variable is unset."""
    http_transport: Literal["aiohttp", "httpx"] = "aiohttp"
    """The transport: aiohttp's (fast: routing requests are posted on aiohttp directly,
    `backends.aiohttp_exchange`) or httpx's own."""


PromptStyle = Literal["chat", "finetuned"]
LabelScoring = Literal["full", "constrained"]


def _prompt_field(finetuned: str) -> Any:
    """The `prompt` key of the types that can serve a GGUF from `triagedesk finetune`."""
    return Field(
        default="chat",
        description=(
            "chat: the taxonomy in a chat prompt, JSON answer; finetuned: a GGUF from"
            f" `triagedesk finetune`, asked its trained prompt, {finetuned}"
        ),
    )


class OpenAIOptions(HTTPOptions):
    """`type = "openai"`: any OpenAI-compatible chat completions API (`prompt = "finetuned"`:
    its completions API, `POST /v1/completions`)."""

    base_url: str
    model: str
    prompt: PromptStyle = _prompt_field(
        "through /v1/completions with a label grammar (llama.cpp-family servers)"
    )


class AnthropicOptions(HTTPOptions):
    """`type = "anthropic"`: the Messages API (`base_url` defaults to Anthropic's)."""

    model: str


class LlamaCppOptions(HTTPOptions):
    """`type = "llamacpp"`: a llama.cpp server's native API."""

    base_url: str
    prompt: PromptStyle = _prompt_field("the answer constrained to the labels by a grammar")


class OllamaOptions(_Chat):
    """`type = "ollama"`: an Ollama server, through the ollama client."""

    model: str
    host: str | None = None
    keep_alive: str | int | None = None


class LlamaCppLocalOptions(_Strict):
    """`type = "llamacpp-local"`: a GGUF file run in this process by llama-cpp-python."""

    model_file_key: ClassVar[str | None] = "model_path"
    model_path: str
    model: str | None = None
    n_ctx: int = Field(default=2048, ge=128)
    n_gpu_layers: int = 0
    n_threads: int | None = Field(default=None, ge=1, description="llama.cpp CPU threads")
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    prompt: PromptStyle = _prompt_field("every label scored")
    label_scoring: LabelScoring = Field(
        default="full",
        description=(
            'with prompt = "finetuned": full scores every label token over the whole'
            " vocabulary, one ticket at a time; constrained scores as a decoder held to the"
            " labels, many waiting tickets in one batch (fast on a GPU)"
        ),
    )
    batch_tickets: int = Field(
        default=64, ge=1, le=64, description="tickets scored together at most (constrained)"
    )
    label_tokens: dict[str, Annotated[int, Field(ge=0)]] | None = Field(
        default=None,
        description=(
            'with prompt = "finetuned": each label\'s own token, for a model from'
            " `finetune --objective classify` (its backend.toml writes this table)"
        ),
    )

    @model_validator(mode="after")
    def _tokens_need_the_trained_prompt(self) -> LlamaCppLocalOptions:
        if self.label_tokens is not None and self.prompt != "finetuned":
            raise ValueError('label_tokens needs prompt = "finetuned"')
        return self

    @property
    def model_name(self) -> str:
        return self.model or Path(self.model_path).stem or self.type


class CascadeOptions(_Strict):
    """`type = "cascade"`: `first`, escalating to `then` under `threshold`."""

    first: str
    then: str
    threshold: float = Field(ge=0.0, le=1.0)


BUILTIN_OPTIONS: dict[str, type[BackendConfig]] = {
    "specialist": SpecialistOptions,
    "openai": OpenAIOptions,
    "anthropic": AnthropicOptions,
    "ollama": OllamaOptions,
    "llamacpp": LlamaCppOptions,
    "llamacpp-local": LlamaCppLocalOptions,
    "cascade": CascadeOptions,
}
"""Each built-in type's (registry.BUILTIN) model."""

_BASE_KEYS = ("name", "type")
COMMON_KEYS: tuple[str, ...] = tuple(k for k in BackendConfig.model_fields if k not in _BASE_KEYS)
"""Keys every backend takes (README "Configuration"): limits and prices."""


@dataclass(frozen=True, slots=True)
class TypeKeys:
    """The keys one backend type reads, beyond those every backend takes (`COMMON_KEYS`)."""

    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()

    def all(self) -> tuple[str, ...]:
        return ("type", *self.required, *self.optional, *COMMON_KEYS)

    @classmethod
    def of(cls, options: type[BackendConfig]) -> TypeKeys:
        """A model's own keys, split by whether they have a default."""
        own = {k: f for k, f in options.model_fields.items() if k not in BackendConfig.model_fields}
        return cls(
            tuple(k for k, f in own.items() if f.is_required()),
            tuple(k for k, f in own.items() if not f.is_required()),
        )


BACKEND_TYPE_KEYS: dict[str, TypeKeys] = {
    name: TypeKeys.of(options) for name, options in BUILTIN_OPTIONS.items()
}
"""The keys of each built-in type, read off its model: for error messages ("a key of type
'ollama'") and the tests."""


def options_class(type_name: str) -> type[BackendConfig] | None:
    """The `Options` model of a backend type's block; None for a type nobody has.

    A built-in type's model is read from the core, importing no backend module (so loading a
    config never imports httpx or an SDK). A plugin's is its backend class's `Options`
    attribute, so its module is imported; a plugin without one, or one that fails to load
    (reported when it is used, as always), gets the base model, which keeps its own keys.
    """
    if type_name in BUILTIN_OPTIONS:
        return BUILTIN_OPTIONS[type_name]
    if type_name not in available_types():
        return None
    try:
        options = getattr(load_class(type_name), "Options", None)
    except BackendLoadError:
        return BackendConfig
    if isinstance(options, type) and issubclass(options, BackendConfig):
        return options
    return BackendConfig
