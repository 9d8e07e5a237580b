"""Hypothesis strategies for stream event sequences and consumers."""

from __future__ import annotations

import json

from hypothesis import strategies as st

from bedrock_trace.testing import chunk_event, event_message, exception_message

_KEYS = [
    "text",
    "toolUse",
    "input",
    "reasoningContent",
    "signature",
    "citation",
    "toolResult",
    "image",
    "source",
    "toolUseId",
    "name",
    "inputTokens",
    "outputTokens",
    "latencyMs",
    "type",
    "index",
    "delta",
    "usage",
    "message",
    "content",
    "stop_reason",
    "generation",
    "choices",
    "outputs",
    "amazon-bedrock-invocationMetrics",
    "inputTokenCount",
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(_KEYS), children, max_size=3)
    ),
    max_leaves=10,
)

# Payloads that are mostly well-formed, with arbitrary values where the model allows them.
_converse_payloads = {
    "messageStart": st.fixed_dictionaries({"role": st.sampled_from(["assistant", "user"])}),
    "contentBlockStart": st.fixed_dictionaries(
        {
            "contentBlockIndex": st.integers(0, 3),
            "start": st.fixed_dictionaries(
                {
                    "toolUse": st.fixed_dictionaries(
                        {
                            "toolUseId": st.text(min_size=1, max_size=5),
                            "name": st.text(min_size=1, max_size=5),
                        }
                    )
                }
            ),
        }
    ),
    "contentBlockDelta": st.fixed_dictionaries(
        {
            "contentBlockIndex": st.integers(0, 3),
            "delta": st.one_of(
                st.fixed_dictionaries({"text": st.text(max_size=10)}),
                st.fixed_dictionaries(
                    {"toolUse": st.fixed_dictionaries({"input": st.text(max_size=10)})}
                ),
                st.fixed_dictionaries(
                    {
                        "reasoningContent": st.one_of(
                            st.fixed_dictionaries({"text": st.text(max_size=10)}),
                            st.fixed_dictionaries({"signature": st.text(max_size=10)}),
                        )
                    }
                ),
            ),
        }
    ),
    "contentBlockStop": st.fixed_dictionaries({"contentBlockIndex": st.integers(0, 3)}),
    "messageStop": st.fixed_dictionaries(
        {"stopReason": st.sampled_from(["end_turn", "tool_use", "max_tokens"])}
    ),
    "metadata": st.fixed_dictionaries(
        {
            "usage": st.fixed_dictionaries(
                {
                    "inputTokens": st.integers(0, 1000),
                    "outputTokens": st.integers(0, 1000),
                    "totalTokens": st.integers(0, 2000),
                }
            ),
            "metrics": st.fixed_dictionaries({"latencyMs": st.integers(0, 10**5)}),
        }
    ),
}


@st.composite
def converse_messages(draw) -> list[bytes]:
    """An arbitrary ConverseStream: any order of events, maybe ending in an exception."""
    names = draw(st.lists(st.sampled_from(sorted(_converse_payloads)), max_size=12))
    messages = [event_message(name, draw(_converse_payloads[name])) for name in names]
    if draw(st.booleans()) and draw(st.booleans()):
        code = draw(
            st.sampled_from(
                ["throttlingException", "modelStreamErrorException", "validationException"]
            )
        )
        messages.append(exception_message(code, "boom"))
    return messages


@st.composite
def invoke_chunks(draw) -> list[bytes]:
    """An arbitrary InvokeModelWithResponseStream: JSON or raw bytes in each chunk."""
    chunks = draw(
        st.lists(
            st.one_of(
                st.dictionaries(st.sampled_from(_KEYS), json_values, max_size=4),
                st.binary(max_size=20),
                json_values.map(lambda value: json.dumps(value).encode()),
            ),
            max_size=10,
        )
    )
    messages = [chunk_event(chunk) for chunk in chunks]
    if draw(st.booleans()) and draw(st.booleans()):
        messages.append(exception_message("modelStreamErrorException", "boom"))
    return messages


# How the caller consumes the stream: read all, or stop at event k by break / close / drop.
consumers = st.one_of(
    st.just(("exhaust", 0)),
    st.tuples(st.sampled_from(["break", "close", "drop", "hold"]), st.integers(0, 6)),
)

invoke_model_ids = st.sampled_from(
    [
        "anthropic.claude-3-haiku-20240307-v1:0",
        "us.amazon.nova-lite-v1:0",
        "meta.llama3-8b-instruct-v1:0",
        "amazon.titan-text-express-v1",
        "mistral.mistral-large-2407-v1:0",
        "cohere.command-r-v1:0",
        "ai21.jamba-1-5-mini-v1:0",
        "openai.gpt-oss-20b-1:0",
        "deepseek.r1-v1:0",
        "vendor.unknown-model-v1",
    ]
)
