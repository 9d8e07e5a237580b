"""What a traced agent run must look like: the span tree of DESIGN.md section 7, as data.

Shared by the sync and async tests so that both assert exactly the same tree.
"""

from __future__ import annotations

from typing import Any

from mlflow.entities import SpanStatusCode

from .agent_events import FULL_RUN_USAGE, MODEL

# (name, span type, children) for agent_events.full_run().
FULL_RUN_TREE: tuple[Any, ...] = (
    "BedrockAgentRuntime.invoke_agent",
    "AGENT",
    [
        ("guardrail", "GUARDRAIL", []),
        ("preProcessing", "CHAIN", [(MODEL, "LLM", [])]),
        (
            "orchestration",
            "CHAIN",
            [(MODEL, "LLM", []), ("knowledgeBaseLookup", "RETRIEVER", [])],
        ),
        ("orchestration", "CHAIN", [(MODEL, "LLM", []), ("get_order", "TOOL", [])]),
        (
            "orchestration",
            "CHAIN",
            [("refunds", "AGENT", [("orchestration", "CHAIN", [(MODEL, "LLM", [])])])],
        ),
        ("orchestration", "CHAIN", [(MODEL, "LLM", [])]),
        ("postProcessing", "CHAIN", [(MODEL, "LLM", [])]),
    ],
)


def tree(spans: list[Any]) -> tuple[Any, ...]:
    """The (name, type, children) tree of one trace's spans, children in start order."""
    by_parent: dict[Any, list[Any]] = {}
    for span in spans:
        by_parent.setdefault(span.parent_id, []).append(span)

    def build(span: Any) -> tuple[Any, ...]:
        children = sorted(by_parent.get(span.span_id, []), key=lambda s: s.start_time_ns)
        return (span.name, span.span_type, [build(child) for child in children])

    (root,) = by_parent[None]
    return build(root)


def check_full_run(spans: list[Any]) -> None:
    """Everything the full run's trace must say, beyond its shape."""
    assert tree(spans) == FULL_RUN_TREE
    by_id = {span.span_id: span for span in spans}
    root = next(span for span in spans if span.parent_id is None)
    usage = root.attributes["mlflow.chat.tokenUsage"]
    assert usage == {
        **FULL_RUN_USAGE,
        "total_tokens": FULL_RUN_USAGE["input_tokens"] + FULL_RUN_USAGE["output_tokens"],
    }
    llm_total = sum(
        s.attributes["mlflow.chat.tokenUsage"]["total_tokens"]
        for s in spans
        if s.span_type == "LLM"
    )
    assert llm_total == usage["total_tokens"]
    assert root.outputs["completion"] == "Yes: within 30 days."
    assert root.attributes["bedrock_trace.session_id"]
    assert root.status.status_code == SpanStatusCode.OK
    (retriever,) = [s for s in spans if s.span_type == "RETRIEVER"]
    assert retriever.inputs == {"query": "return policy"}
    assert [d["metadata"]["doc_uri"] for d in retriever.outputs] == [
        "s3://policies/returns.pdf",
        "https://example.com/refunds",
    ]
    assert retriever.outputs[0]["page_content"].startswith("Returns are accepted")
    (tool,) = [s for s in spans if s.span_type == "TOOL"]
    assert tool.inputs["parameters"][0]["value"] == "A-1001"
    assert tool.outputs == '{"status": "delivered", "days_ago": 12}'
    (collaborator,) = [s for s in spans if s.name == "refunds"]
    assert collaborator.outputs == {"type": "TEXT", "text": "Yes, refundable."}
    step = by_id[collaborator.parent_id]
    assert step.name == "orchestration"
    rationale = [s.outputs for s in spans if s.outputs and "rationale" in (s.outputs or {})]
    assert {"rationale": "I should search the policies."}.items() <= rationale[0].items()
    for span in spans:
        assert span.end_time_ns is not None
        parent = by_id.get(span.parent_id)
        if parent is not None:  # every child inside its parent's interval
            assert parent.start_time_ns <= span.start_time_ns <= span.end_time_ns
            assert span.end_time_ns <= parent.end_time_ns


def picture(spans: list[Any]) -> str:
    """The tree as docs/agents.md draws it: one line a span, ``name  [TYPE]``."""
    lines: list[str] = []

    def draw(node: tuple[Any, ...], prefix: str, last: bool, top: bool) -> None:
        name, span_type, children = node
        branch = "" if top else ("└── " if last else "├── ")
        lines.append(f"{prefix}{branch}{name}  [{span_type}]")
        inner = prefix if top else prefix + ("    " if last else "│   ")
        for index, child in enumerate(children):
            draw(child, inner, index == len(children) - 1, False)

    draw(tree(spans), "", True, True)
    return "\n".join(lines)
