"""Model ids, providers, and what an invoke_model body of each model family means.

One function turns any model id (plain, cross-region inference profile, ARN) into a vendor and
a family; one table, keyed by family, says how that family's invoke_model bodies read: span
type, stop reason, token usage. Unknown families fall back to a generic reading that still
records the decoded body and never guesses token counts.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from bedrock_trace import _keys as K

# Cross-region inference profile prefixes ("us.anthropic.claude-...", "global.amazon.nova-...").
_GEO_PREFIXES = frozenset({"us", "eu", "apac", "global", "us-gov", "ca", "jp", "au", "uk"})


def _base_model_id(model_id: str) -> str:
    """``anthropic.claude-3-haiku-...`` out of any of the forms Bedrock accepts.

    Handles ``arn:aws:bedrock:<region>::foundation-model/<id>``, inference-profile ARNs
    (``.../inference-profile/us.<id>``), custom-model ARNs whose path starts with the base model,
    and geo-prefixed profile ids. Application inference profiles and provisioned-model ARNs
    carry no model name; they come back as the opaque resource id.
    """
    if model_id.startswith("arn:"):
        resource = model_id.split(":", 5)[-1]
        parts = resource.split("/")
        model_id = parts[1] if len(parts) > 1 else parts[0]
    head, sep, rest = model_id.partition(".")
    if sep and head in _GEO_PREFIXES and "." in rest:
        return rest
    return model_id


def provider_of(model_id: str) -> str | None:
    """The vendor part of a model id (``anthropic``), or None when the id does not name one."""
    base = _base_model_id(model_id)
    vendor, sep, rest = base.partition(".")
    if not sep or not vendor or not rest or "/" in vendor:
        return None
    return vendor


# --- token usage ---------------------------------------------------------------------------


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    # Only ASCII digits: str.isdigit() also accepts "²" (int() rejects it), and a count in
    # other scripts is not what a service sends. Past Python's digit limit int() raises too.
    if isinstance(value, str) and value.isascii() and value.isdigit():
        try:
            return int(value)
        except ValueError:
            return None
    return None


def make_usage(
    input_tokens: Any,
    output_tokens: Any,
    *,
    total_tokens: Any = None,
    cache_read: Any = None,
    cache_write: Any = None,
) -> dict[str, int] | None:
    """Token usage in MLflow's ``mlflow.chat.tokenUsage`` shape, or None if incomplete.

    As in MLflow's own Bedrock integration, ``input_tokens`` includes tokens read from and
    written to the prompt cache (Bedrock reports them separately), and ``total_tokens`` is then
    recomputed as input + output.
    """
    inp, out = _int(input_tokens), _int(output_tokens)
    if inp is None or out is None:
        return None
    usage = {K.INPUT_TOKENS: inp, K.OUTPUT_TOKENS: out}
    read, write = _int(cache_read), _int(cache_write)
    if read is not None:
        usage[K.CACHE_READ_TOKENS] = read
    if write is not None:
        usage[K.CACHE_WRITE_TOKENS] = write
    cached = (read or 0) + (write or 0)
    total = _int(total_tokens)
    if cached:
        usage[K.INPUT_TOKENS] = inp + cached
        usage[K.TOTAL_TOKENS] = inp + cached + out
    else:
        usage[K.TOTAL_TOKENS] = total if total is not None else inp + out
    return usage


def _dig(body: Any, *path: str | int) -> Any:
    for step in path:
        if isinstance(step, int):
            if not isinstance(body, list) or len(body) <= step:
                return None
        elif not isinstance(body, Mapping):
            return None
        body = body[step] if isinstance(step, int) else body.get(step)
    return body


@attrs.frozen
class UsageFields:
    """Where one source reports token counts: the keys of a mapping found at ``path``."""

    input: str
    output: str
    total: str | None = None
    cache_read: str | None = None
    cache_write: str | None = None
    path: tuple[str, ...] = ()

    def __call__(self, source: Any) -> dict[str, int] | None:
        fields = _dig(source, *self.path) if self.path else source
        if not isinstance(fields, Mapping):
            return None
        return make_usage(
            fields.get(self.input),
            fields.get(self.output),
            total_tokens=fields.get(self.total) if self.total else None,
            cache_read=fields.get(self.cache_read) if self.cache_read else None,
            cache_write=fields.get(self.cache_write) if self.cache_write else None,
        )


#: Converse ``usage`` (TokenUsage in the Bedrock Runtime API reference).
converse_usage = UsageFields(
    "inputTokens",
    "outputTokens",
    total="totalTokens",
    cache_read="cacheReadInputTokens",
    cache_write="cacheWriteInputTokens",
)
#: The ``x-amzn-bedrock-*-token-count`` response headers of invoke_model.
header_usage = UsageFields(
    "x-amzn-bedrock-input-token-count",
    "x-amzn-bedrock-output-token-count",
    cache_read="x-amzn-bedrock-cache-read-input-token-count",
    cache_write="x-amzn-bedrock-cache-write-input-token-count",
)
#: ``amazon-bedrock-invocationMetrics`` in the last chunk of an invoke_model stream.
metrics_usage = UsageFields(
    "inputTokenCount",
    "outputTokenCount",
    cache_read="cacheReadInputTokenCount",
    cache_write="cacheWriteInputTokenCount",
)
_anthropic_snake_usage = UsageFields(
    "input_tokens",
    "output_tokens",
    cache_read="cache_read_input_tokens",
    cache_write="cache_creation_input_tokens",
    path=("usage",),
)
# The same counts spelled as Converse spells them, which MLflow's own integration also reads.
_anthropic_camel_usage = UsageFields(
    "inputTokens",
    "outputTokens",
    total="totalTokens",
    cache_read="cacheReadInputTokens",
    cache_write="cacheWriteInputTokens",
    path=("usage",),
)


def _anthropic_usage(body: Any) -> dict[str, int] | None:
    return _anthropic_snake_usage(body) or _anthropic_camel_usage(body)


_nova_usage = UsageFields(
    "inputTokens",
    "outputTokens",
    total="totalTokens",
    cache_read="cacheReadInputTokenCount",
    cache_write="cacheWriteInputTokenCount",
    path=("usage",),
)
_openai_usage = UsageFields(
    "prompt_tokens", "completion_tokens", total="total_tokens", path=("usage",)
)
_llama_usage = UsageFields("prompt_token_count", "generation_token_count")


def _titan_text_usage(body: Any) -> dict[str, int] | None:
    results = _dig(body, "results")
    if not isinstance(results, list):
        return None
    counts = [_int(_dig(result, "tokenCount")) for result in results]
    if not counts or None in counts:
        return None
    return make_usage(body.get("inputTextTokenCount"), sum(c for c in counts if c is not None))


def _titan_embed_usage(body: Any) -> dict[str, int] | None:
    return make_usage(_dig(body, "inputTextTokenCount"), 0)


def _no_usage(body: Any) -> None:
    return None


def _first_of(*paths: tuple[str | int, ...]) -> Callable[[Any], str | None]:
    def read(body: Any) -> str | None:
        for path in paths:
            value = _dig(body, *path)
            if isinstance(value, str):
                return value
        return None

    return read


def _chat_if_messages(request: Any) -> str:
    if isinstance(request, Mapping) and "messages" in request:
        return K.SpanType.CHAT_MODEL
    return K.SpanType.LLM


def _always(span_type: str) -> Callable[[Any], str]:
    return lambda request: span_type


@attrs.frozen
class Family:
    """How one model family's invoke_model bodies read."""

    name: str
    span_type: Callable[[Any], str]
    usage: Callable[[Any], dict[str, int] | None]
    stop_reason: Callable[[Any], str | None]


_GENERIC = Family(
    "generic",
    _chat_if_messages,
    _no_usage,
    _first_of(("stop_reason",), ("stopReason",), ("choices", 0, "finish_reason")),
)

# Keyed by the start of the base model id; the longest matching key wins. Each row follows the
# family's page under "Inference request parameters and response fields for foundation models"
# in the Amazon Bedrock user guide (model-parameters-<family>.html).
FAMILIES: dict[str, Family] = {
    # model-parameters-anthropic-claude-messages.html (and -text-completion.html)
    "anthropic.": Family(
        "anthropic",
        _chat_if_messages,
        _anthropic_usage,
        _first_of(("stop_reason",)),
    ),
    # model-parameters-nova.html (Nova understanding models, messages-v1 schema)
    "amazon.nova-": Family(
        "amazon-nova",
        _chat_if_messages,
        _nova_usage,
        _first_of(("stopReason",)),
    ),
    # model-parameters-titan-text.html
    "amazon.titan-text": Family(
        "amazon-titan-text",
        _always(K.SpanType.LLM),
        _titan_text_usage,
        _first_of(("results", 0, "completionReason")),
    ),
    # model-parameters-titan-embed-text.html
    "amazon.titan-embed": Family(
        "amazon-titan-embed",
        _always(K.SpanType.EMBEDDING),
        _titan_embed_usage,
        _first_of(),
    ),
    # model-parameters-embed.html (Cohere Embed): no counts in the body, headers carry them
    "cohere.embed": Family("cohere-embed", _always(K.SpanType.EMBEDDING), _no_usage, _first_of()),
    # model-parameters-titan-image.html (Titan Image Generator)
    "amazon.titan-image": Family(
        "amazon-titan-image", _always(K.IMAGE_GENERATION), _no_usage, _first_of(("error",))
    ),
    # model-parameters-nova-canvas.html (Nova Canvas: the Titan Image request format)
    "amazon.nova-canvas": Family(
        "amazon-nova-canvas", _always(K.IMAGE_GENERATION), _no_usage, _first_of(("error",))
    ),
    # model-parameters-diffusion-stable-ultra-text-image-request-response.html (and the Stable
    # Image Core / SD 3.5 pages: same body shape)
    "stability.": Family(
        "stability",
        _always(K.IMAGE_GENERATION),
        _no_usage,
        _first_of(("finish_reasons", 0), ("artifacts", 0, "finishReason")),
    ),
    # model-parameters-cohere-command.html (legacy Command text models)
    "cohere.command-text": Family(
        "cohere-command-text",
        _always(K.SpanType.LLM),
        _no_usage,
        _first_of(("generations", 0, "finish_reason")),
    ),
    "cohere.command-light-text": Family(
        "cohere-command-text",
        _always(K.SpanType.LLM),
        _no_usage,
        _first_of(("generations", 0, "finish_reason")),
    ),
    # model-parameters-meta.html
    "meta.llama": Family(
        "meta-llama",
        _always(K.SpanType.LLM),
        _llama_usage,
        _first_of(("stop_reason",)),
    ),
    # model-parameters-mistral-text-completion.html / -mistral-chat-completion.html
    "mistral.": Family(
        "mistral",
        _chat_if_messages,
        _openai_usage,
        _first_of(("outputs", 0, "stop_reason"), ("choices", 0, "finish_reason")),
    ),
    # model-parameters-cohere-command-r-plus.html
    "cohere.command": Family(
        "cohere-command",
        _always(K.SpanType.CHAT_MODEL),
        _no_usage,
        _first_of(("finish_reason",)),
    ),
    # model-parameters-jamba.html
    "ai21.jamba": Family(
        "ai21-jamba",
        _chat_if_messages,
        _openai_usage,
        _first_of(("choices", 0, "finish_reason")),
    ),
    # model-parameters-deepseek.html
    "deepseek.": Family(
        "deepseek",
        _chat_if_messages,
        _openai_usage,
        _first_of(("choices", 0, "stop_reason"), ("choices", 0, "finish_reason")),
    ),
    # model-parameters-openai.html (gpt-oss, chat completions format)
    "openai.": Family(
        "openai",
        _chat_if_messages,
        _openai_usage,
        _first_of(("choices", 0, "finish_reason")),
    ),
}
_FAMILY_KEYS = sorted(FAMILIES, key=len, reverse=True)

# Embedding models of families whose other models chat (amazon.nova-2-multimodal-embeddings,
# future embedders): the model id says "embed", and no token counts are guessed.
_EMBEDDING = Family("embedding", _always(K.SpanType.EMBEDDING), _no_usage, _first_of())


def family_of(model_id: Any) -> Family:
    """The body family for a model id in any form; the generic reading when unknown."""
    if not isinstance(model_id, str):
        return _GENERIC
    return _family_of(model_id)


@functools.lru_cache(maxsize=512)  # an application uses a handful of model ids
def _family_of(model_id: str) -> Family:
    base = _base_model_id(model_id)
    for key in _FAMILY_KEYS:
        if base.startswith(key):
            family = FAMILIES[key]
            break
    else:
        family = _GENERIC
    if "embed" in base and family.span_type(None) != K.SpanType.EMBEDDING:
        return _EMBEDDING
    return family
