"""What each agent framework does, built the default way, as a table of scenarios.

Shared by the in-process tests and by ``app.py`` (run with the environment variable alone), so
this module imports nothing of ``bedrock_trace``: the frameworks find the stand-in through
``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` and their credentials in ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` / ``AWS_DEFAULT_REGION``, like any program on AWS. A framework is
imported only when one of its scenarios runs.

Each scenario returns a JSON-able digest of the framework's own result (text, tool calls,
usage), compared between traced and untraced runs.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# A Converse model (Anthropic's, as most users pick) and the invoke_model ones.
MODEL = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
CLAUDE_INVOKE = "anthropic.claude-3-haiku-20240307-v1:0"
EMBEDDING_MODEL = "amazon.titan-embed-text-v2:0"

CONVERSE = "BedrockRuntime.converse"
CONVERSE_STREAM = "BedrockRuntime.converse_stream"
INVOKE = "BedrockRuntime.invoke_model"
INVOKE_STREAM = "BedrockRuntime.invoke_model_with_response_stream"

WEATHER_QUESTION = "What's the weather in Paris?"
TOOL_USE_ID = "tooluse_paris_0001"
# The tool's answer, recognisable in the follow-up request and the final reply.
WEATHER = "Sunny in Paris"
EMBEDDING = [0.125, -0.5, 0.25, 0.0625]


def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    return f"Sunny in {city}"


def standin_rules() -> list[dict[str, Any]]:
    """The stand-in's scenario: a fixed tool call id (so runs compare equal), Titan embeddings.

    Everything else is the stand-in's default answer: it echoes the user, calls a tool whose
    subject the question names, and answers with the tool's result once it has it.
    """
    return [
        {
            "operation": "*",
            "contains": "weather",
            "tool_result": False,
            "reply": {
                "tool_uses": [
                    {"name": "get_weather", "input": {"city": "Paris"}, "tool_use_id": TOOL_USE_ID}
                ]
            },
        },
        {
            "operation": "invoke_model",
            "model": "titan-embed",
            "reply": {"body": {"embedding": EMBEDDING, "inputTextTokenCount": 3}},
        },
    ]


@dataclass(frozen=True)
class Scenario:
    """One thing a user does with a framework, and the Bedrock spans it must produce."""

    framework: str
    name: str
    run: Callable[[], Any]
    #: (span name, span type) of each Bedrock call, in call order.
    spans: tuple[tuple[str, str], ...]
    #: The scenario is a tool round trip: the model asks for get_weather, the framework runs
    #: it and calls the model again with its result.
    tools: bool = False
    #: The Bedrock spans nest under the caller's span (False: a documented limit).
    nested: bool = True

    @property
    def id(self) -> str:
        return f"{self.framework}-{self.name}"


def _chat(name: str) -> tuple[str, str]:
    return (name, "CHAT_MODEL")


# --- LangChain (langchain-aws) ----------------------------------------------------------------


def _lc_digest(message: Any) -> dict[str, Any]:
    return {
        "text": message.text if isinstance(message.text, str) else message.text(),
        "tool_calls": [
            {"name": c["name"], "args": c["args"], "id": c["id"]} for c in message.tool_calls
        ],
        "usage": dict(message.usage_metadata or {}),
    }


def _lc_stream_digest(chunks: list[Any]) -> dict[str, Any]:
    message = chunks[0]
    for chunk in chunks[1:]:
        message = message + chunk
    return _lc_digest(message)


def _lc_converse() -> Any:
    from langchain_aws import ChatBedrockConverse

    return ChatBedrockConverse(model=MODEL)


def _lc_tool() -> Any:
    from langchain_core.tools import tool

    return tool(get_weather)


def lc_chat() -> Any:
    return _lc_digest(_lc_converse().invoke("Hello there"))


def lc_stream() -> Any:
    return _lc_stream_digest(list(_lc_converse().stream("Tell me a story")))


def lc_tools() -> Any:
    from langchain_core.messages import HumanMessage

    weather = _lc_tool()
    model = _lc_converse().bind_tools([weather])
    messages: list[Any] = [HumanMessage(WEATHER_QUESTION)]
    asked = model.invoke(messages)
    messages.append(asked)
    messages.extend(weather.invoke(call) for call in asked.tool_calls)
    return [_lc_digest(asked), _lc_digest(model.invoke(messages))]


def lc_achat() -> Any:
    return _lc_digest(asyncio.run(_lc_converse().ainvoke("Hello there")))


def lc_astream() -> Any:
    async def collect() -> list[Any]:
        return [chunk async for chunk in _lc_converse().astream("Tell me a story")]

    return _lc_stream_digest(asyncio.run(collect()))


def lc_atools() -> Any:
    from langchain_core.messages import HumanMessage

    async def run() -> Any:
        weather = _lc_tool()
        model = _lc_converse().bind_tools([weather])
        messages: list[Any] = [HumanMessage(WEATHER_QUESTION)]
        asked = await model.ainvoke(messages)
        messages.append(asked)
        messages.extend([await weather.ainvoke(call) for call in asked.tool_calls])
        return [_lc_digest(asked), _lc_digest(await model.ainvoke(messages))]

    return asyncio.run(run())


def _lc_invoke_model() -> Any:
    from langchain_aws import ChatBedrock

    return ChatBedrock(model_id=CLAUDE_INVOKE)


def lc_invoke_chat() -> Any:
    return _lc_digest(_lc_invoke_model().invoke("Hello there"))


def lc_invoke_stream() -> Any:
    return _lc_stream_digest(list(_lc_invoke_model().stream("Tell me a story")))


def lc_invoke_tools() -> Any:
    from langchain_core.messages import HumanMessage

    weather = _lc_tool()
    model = _lc_invoke_model().bind_tools([weather])
    messages: list[Any] = [HumanMessage(WEATHER_QUESTION)]
    asked = model.invoke(messages)
    messages.append(asked)
    messages.extend(weather.invoke(call) for call in asked.tool_calls)
    return [_lc_digest(asked), _lc_digest(model.invoke(messages))]


def _lc_embeddings() -> Any:
    from langchain_aws import BedrockEmbeddings

    return BedrockEmbeddings(model_id=EMBEDDING_MODEL)


def lc_embed() -> Any:
    embeddings = _lc_embeddings()
    return [embeddings.embed_query("Paris"), embeddings.embed_documents(["Rome", "Oslo"])]


def lc_aembed() -> Any:
    return asyncio.run(_lc_embeddings().aembed_query("Paris"))


# --- Strands Agents ---------------------------------------------------------------------------


def _strands_agent(*, tools: bool = False, streaming: bool = True) -> Any:
    from strands import Agent, tool
    from strands.models import BedrockModel

    return Agent(
        model=BedrockModel(model_id=MODEL, streaming=streaming),
        tools=[tool(get_weather)] if tools else [],
        callback_handler=None,
    )


def _strands_digest(result: Any) -> dict[str, Any]:
    return {
        "text": str(result),
        "stop_reason": result.stop_reason,
        "usage": dict(result.metrics.accumulated_usage),
    }


def _strands_conversation(messages: list[Any]) -> list[Any]:
    """The conversation without Strands' per-run ids and timings."""
    keep = ("text", "toolUse", "toolResult")
    return [
        [message["role"], [{k: v for k, v in b.items() if k in keep} for b in message["content"]]]
        for message in messages
    ]


def strands_chat() -> Any:
    return _strands_digest(_strands_agent(streaming=False)("Hello there"))


def strands_stream() -> Any:  # Strands' default: converse_stream
    return _strands_digest(_strands_agent()("Tell me a story"))


def strands_tools() -> Any:
    agent = _strands_agent(tools=True)
    result = agent(WEATHER_QUESTION)
    return {"result": _strands_digest(result), "messages": _strands_conversation(agent.messages)}


def strands_achat() -> Any:
    return _strands_digest(asyncio.run(_strands_agent(streaming=False).invoke_async("Hello")))


def strands_astream() -> Any:
    async def collect() -> list[str]:
        agent = _strands_agent()
        return [e["data"] async for e in agent.stream_async("Tell me a story") if "data" in e]

    return asyncio.run(collect())


def strands_atools() -> Any:
    async def run() -> Any:
        agent = _strands_agent(tools=True)
        result = await agent.invoke_async(WEATHER_QUESTION)
        return {
            "result": _strands_digest(result),
            "messages": _strands_conversation(agent.messages),
        }

    return asyncio.run(run())


# --- Pydantic AI ------------------------------------------------------------------------------


def _pai_agent(*, tools: bool = False) -> Any:
    from pydantic_ai import Agent

    return Agent(f"bedrock:{MODEL}", tools=[get_weather] if tools else [])


def _pai_digest(result: Any) -> dict[str, Any]:
    usage = result.usage
    return {
        "output": result.output,
        "usage": [usage.input_tokens, usage.output_tokens, usage.requests],
        "parts": [
            [type(part).__name__, getattr(part, "content", None), getattr(part, "args", None)]
            for message in result.all_messages()
            for part in message.parts
        ],
    }


def pai_chat() -> Any:
    return _pai_digest(_pai_agent().run_sync("Hello there"))


def pai_stream() -> Any:
    result = _pai_agent().run_stream_sync("Tell me a story")
    return list(result.stream_text(delta=True))


def pai_tools() -> Any:
    return _pai_digest(_pai_agent(tools=True).run_sync(WEATHER_QUESTION))


def pai_achat() -> Any:
    return _pai_digest(asyncio.run(_pai_agent().run("Hello there")))


def pai_astream() -> Any:
    async def collect() -> list[str]:
        async with _pai_agent().run_stream("Tell me a story") as result:
            return [delta async for delta in result.stream_text(delta=True)]

    return asyncio.run(collect())


def pai_atools() -> Any:
    return _pai_digest(asyncio.run(_pai_agent(tools=True).run(WEATHER_QUESTION)))


# --- LlamaIndex (llama-index-llms-bedrock-converse) -------------------------------------------


def _li_llm() -> Any:
    from llama_index.llms.bedrock_converse import BedrockConverse

    return BedrockConverse(model=MODEL)


def _li_user(text: str) -> list[Any]:
    from llama_index.core.llms import ChatMessage

    return [ChatMessage(role="user", content=text)]


def _li_digest(response: Any) -> dict[str, Any]:
    return {
        "text": response.message.content,
        "tool_calls": [
            block.model_dump()
            for block in response.message.blocks
            if block.block_type == "tool_call"
        ],
        "usage": {k: response.raw.get("usage", {}).get(k) for k in ("inputTokens", "outputTokens")}
        if isinstance(response.raw, dict)
        else None,
    }


def li_chat() -> Any:
    return _li_digest(_li_llm().chat(_li_user("Hello there")))


def li_stream() -> Any:
    return [r.delta for r in _li_llm().stream_chat(_li_user("Tell me a story"))]


def _li_round_trip(llm: Any, asked: Any) -> list[Any]:
    from llama_index.core.llms import ChatMessage

    messages = [*_li_user(WEATHER_QUESTION), asked.message]
    for call in llm.get_tool_calls_from_response(asked, error_on_no_tool_call=True):
        messages.append(
            ChatMessage(
                role="tool",
                content=get_weather(**call.tool_kwargs),
                additional_kwargs={"tool_call_id": call.tool_id},
            )
        )
    return messages


def li_tools() -> Any:
    from llama_index.core.tools import FunctionTool

    llm = _li_llm()
    tools = [FunctionTool.from_defaults(get_weather)]
    asked = llm.chat_with_tools(tools, user_msg=WEATHER_QUESTION)
    final = llm.chat_with_tools(tools, chat_history=_li_round_trip(llm, asked))
    return [_li_digest(asked), _li_digest(final)]


def li_achat() -> Any:
    return _li_digest(asyncio.run(_li_llm().achat(_li_user("Hello there"))))


def li_astream() -> Any:
    async def collect() -> list[str]:
        stream = await _li_llm().astream_chat(_li_user("Tell me a story"))
        return [r.delta async for r in stream]

    return asyncio.run(collect())


def li_agent(*, streaming: bool) -> Callable[[], Any]:
    def run() -> Any:
        from llama_index.core.agent.workflow import FunctionAgent

        async def go() -> str:
            agent = FunctionAgent(tools=[get_weather], llm=_li_llm(), streaming=streaming)
            return str(await agent.run(WEATHER_QUESTION))

        return asyncio.run(go())

    return run


# --- the table ----------------------------------------------------------------------------------

_C, _CS = _chat(CONVERSE), _chat(CONVERSE_STREAM)
# With aioboto3 installed, LlamaIndex's async methods are native; without it they run the sync
# client in threads, and astream_chat's thread (run_in_executor) does not carry the caller's
# context: its spans start traces of their own.
_LI_NATIVE_ASYNC = importlib.util.find_spec("aioboto3") is not None

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("langchain", "chat", lc_chat, (_C,)),
    Scenario("langchain", "stream", lc_stream, (_CS,)),
    Scenario("langchain", "tools", lc_tools, (_C, _C), tools=True),
    Scenario("langchain", "achat", lc_achat, (_C,)),
    Scenario("langchain", "astream", lc_astream, (_CS,)),
    Scenario("langchain", "atools", lc_atools, (_C, _C), tools=True),
    Scenario("langchain", "invoke-chat", lc_invoke_chat, (_chat(INVOKE),)),
    Scenario("langchain", "invoke-stream", lc_invoke_stream, (_chat(INVOKE_STREAM),)),
    Scenario(
        "langchain", "invoke-tools", lc_invoke_tools, (_chat(INVOKE), _chat(INVOKE)), tools=True
    ),
    Scenario("langchain", "embed", lc_embed, ((INVOKE, "EMBEDDING"),) * 3),
    Scenario("langchain", "aembed", lc_aembed, ((INVOKE, "EMBEDDING"),)),
    Scenario("strands", "chat", strands_chat, (_C,)),
    Scenario("strands", "stream", strands_stream, (_CS,)),
    Scenario("strands", "tools", strands_tools, (_CS, _CS), tools=True),
    Scenario("strands", "achat", strands_achat, (_C,)),
    Scenario("strands", "astream", strands_astream, (_CS,)),
    Scenario("strands", "atools", strands_atools, (_CS, _CS), tools=True),
    Scenario("pydantic_ai", "chat", pai_chat, (_C,)),
    Scenario("pydantic_ai", "stream", pai_stream, (_CS,)),
    Scenario("pydantic_ai", "tools", pai_tools, (_C, _C), tools=True),
    Scenario("pydantic_ai", "achat", pai_achat, (_C,)),
    Scenario("pydantic_ai", "astream", pai_astream, (_CS,)),
    Scenario("pydantic_ai", "atools", pai_atools, (_C, _C), tools=True),
    Scenario("llama_index", "chat", li_chat, (_C,)),
    Scenario("llama_index", "stream", li_stream, (_CS,)),
    Scenario("llama_index", "tools", li_tools, (_C, _C), tools=True),
    Scenario("llama_index", "achat", li_achat, (_C,)),
    Scenario("llama_index", "astream", li_astream, (_CS,), nested=_LI_NATIVE_ASYNC),
    Scenario("llama_index", "agent", li_agent(streaming=False), (_C, _C), tools=True),
    Scenario(
        "llama_index",
        "agent-stream",
        li_agent(streaming=True),
        (_CS, _CS),
        tools=True,
        nested=_LI_NATIVE_ASYNC,
    ),
)

BY_ID = {scenario.id: scenario for scenario in SCENARIOS}
