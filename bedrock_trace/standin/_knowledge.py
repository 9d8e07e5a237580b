"""Knowledge bases: a small built-in corpus, Retrieve, RetrieveAndGenerate(Stream) and Rerank.

The agent's knowledge-base lookups (``_agents``) search the same corpus, so a question gets the
same passages from ``retrieve`` and from an agent. Scores are word overlap between the query and
a passage, scaled into the range Bedrock's vector search reports (about 0.3 to 0.95).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs

from bedrock_trace._eventstream import event_message
from bedrock_trace.standin._exchange import _Exchange, _Response
from bedrock_trace.standin._wire import (
    _JSON,
    _json_bytes,
    _JsonObject,
    _list,
    _mapping,
    _str,
    _word_pieces,
)


@attrs.frozen
class _Passage:
    """One chunk of a document in the knowledge base, with where it came from."""

    title: str
    text: str
    #: ``RetrievalResultLocation``: ``{"type": "S3", "s3Location": {"uri": ...}}`` and the like.
    location: Mapping[str, Any]
    source_uri: str
    chunk_id: str


def _s3(key: str) -> Mapping[str, Any]:
    return {"type": "S3", "s3Location": {"uri": f"s3://example-handbook/{key}"}}


# An employee handbook; three location types, as a knowledge base with several data sources has.
_CORPUS: Final = (
    _Passage(
        title="Travel policy",
        text="Book business travel through the travel portal at least 14 days ahead. Flights "
        "under six hours are economy class; hotels up to 180 EUR a night in major cities.",
        location=_s3("travel-policy.md"),
        source_uri="s3://example-handbook/travel-policy.md",
        chunk_id="1%3A0%3AtMtravelAAA",
    ),
    _Passage(
        title="Expenses",
        text="Meals on business trips are reimbursed up to 60 EUR a day with receipts. Submit "
        "expense reports within 30 days of the trip.",
        location=_s3("expenses.md"),
        source_uri="s3://example-handbook/expenses.md",
        chunk_id="1%3A0%3AtMexpensBBB",
    ),
    _Passage(
        title="Remote work",
        text="Staff may work remotely up to three days a week. Core hours are 10:00 to 15:00 "
        "local time, and the office desk booking opens each Friday.",
        location={"type": "WEB", "webLocation": {"url": "https://intranet.example.com/remote"}},
        source_uri="https://intranet.example.com/remote",
        chunk_id="1%3A0%3AtMremoteCCC",
    ),
    _Passage(
        title="Security",
        text="Laptops use full-disk encryption. Report a lost or stolen device to the security "
        "desk within one hour; travel laptops get a privacy screen.",
        location={
            "type": "CONFLUENCE",
            "confluenceLocation": {"url": "https://example.atlassian.net/wiki/spaces/SEC/pages/7"},
        },
        source_uri="https://example.atlassian.net/wiki/spaces/SEC/pages/7",
        chunk_id="1%3A0%3AtMsecureDDD",
    ),
    _Passage(
        title="Vacation",
        text="Full-time employees get 25 days of paid vacation a year. Unused vacation days "
        "carry over until March 31 of the next year.",
        location=_s3("vacation.md"),
        source_uri="s3://example-handbook/vacation.md",
        chunk_id="1%3A0%3AtMvacatiEEE",
    ),
)
_DATA_SOURCE_ID: Final = "EXAMPLEDS1"
_DEFAULT_RESULTS: Final = 3
_STOP_WORDS: Final = frozenset(
    {"what", "which", "when", "where", "does", "with", "that", "this", "have", "from", "about"}
    | {"there", "their", "your", "much", "many", "should", "would", "could", "into", "the"}
)


def _words(text: str) -> set[str]:
    words = re.findall(r"[a-z0-9]+", text.lower())
    # A crude stem, so that "flights" finds "flight" and "days" finds "day".
    return {w.rstrip("s") for w in words if len(w) > 2 and w not in _STOP_WORDS}


def _relevance(query: str, text: str) -> float:
    """Word overlap of the query with the text, scaled to 0.3 .. 0.95 (four decimals)."""
    asked = _words(query)
    if not asked:
        return 0.3
    overlap = len(asked & _words(text)) / len(asked)
    return round(0.3 + 0.65 * overlap, 4)


def _search(query: str, count: int = _DEFAULT_RESULTS) -> list[tuple[_Passage, float]]:
    """The ``count`` best passages for the query, best first (corpus order breaks ties)."""
    scored = [
        (passage, _relevance(query, passage.title + " " + passage.text)) for passage in _CORPUS
    ]
    scored.sort(key=lambda item: -item[1])
    return scored[: max(0, count)]


def _reference(passage: _Passage) -> _JsonObject:
    """A ``RetrievedReference`` (agent traces and citations): content, location, metadata."""
    return {
        "content": {"text": passage.text, "type": "TEXT"},
        "location": dict(passage.location),
        "metadata": {
            "x-amz-bedrock-kb-source-uri": passage.source_uri,
            "x-amz-bedrock-kb-chunk-id": passage.chunk_id,
            "x-amz-bedrock-kb-data-source-id": _DATA_SOURCE_ID,
        },
    }


def _references(query: str, count: int = _DEFAULT_RESULTS) -> list[_JsonObject]:
    return [_reference(passage) for passage, _score in _search(query, count)]


def _sentence_of(passage: _Passage) -> str:
    return f"{passage.title}: {passage.text}"


def _grounded_answer(query: str, count: int = 2) -> tuple[str, list[_JsonObject]]:
    """An answer made of the best passages, and its citations (one per passage cited)."""
    text, citations = "", []
    for passage, _score in _search(query, count):
        sentence = _sentence_of(passage)
        start = len(text) + (1 if text else 0)
        text = f"{text} {sentence}" if text else sentence
        citations.append(
            {
                "generatedResponsePart": {
                    "textResponsePart": {
                        "text": sentence,
                        "span": {"start": start, "end": start + len(sentence) - 1},
                    }
                },
                "retrievedReferences": [_reference(passage)],
            }
        )
    return text, citations


# --- Retrieve ------------------------------------------------------------------------------


def _number_of_results(body: Mapping[str, Any]) -> int:
    vector = _mapping(_mapping(body.get("retrievalConfiguration")).get("vectorSearchConfiguration"))
    count = vector.get("numberOfResults")
    return count if isinstance(count, int) and not isinstance(count, bool) else _DEFAULT_RESULTS


def _retrieve(exchange: _Exchange) -> _JsonObject:
    body = _mapping(exchange.body)
    query = _str(_mapping(body.get("retrievalQuery")).get("text"))
    results = []
    for passage, score in _search(query, _number_of_results(body)):
        result = _reference(passage)
        result["score"] = score
        results.append(result)
    document: _JsonObject = {"retrievalResults": results}
    if body.get("guardrailConfiguration"):
        document["guardrailAction"] = _guardrail_action(exchange)
    return document


# --- RetrieveAndGenerate and its stream ----------------------------------------------------


def _guardrail_action(exchange: _Exchange) -> str:
    intervened = (
        exchange.reply is not None and exchange.reply.guardrail_action == "GUARDRAIL_INTERVENED"
    )
    return "INTERVENED" if intervened else "NONE"


def _generated(exchange: _Exchange) -> tuple[str, list[_JsonObject]]:
    """The generated text and citations: the reply's text (uncited) or the grounded answer."""
    if _guardrail_action(exchange) == "INTERVENED":
        text = exchange.reply.text if exchange.reply and exchange.reply.text else None
        return text or "Sorry, I am unable to assist you with this request.", []
    if exchange.reply is not None and exchange.reply.text is not None:
        return exchange.reply.text, []
    query = _str(_mapping(_mapping(exchange.body).get("input")).get("text"))
    return _grounded_answer(query)


def _session_id(body: Mapping[str, Any]) -> str:
    return _str(body.get("sessionId")) or str(uuid.uuid4())


def _retrieve_and_generate(exchange: _Exchange) -> _JsonObject:
    body = _mapping(exchange.body)
    text, citations = _generated(exchange)
    document: _JsonObject = {
        "sessionId": _session_id(body),
        "output": {"text": text},
        "citations": citations,
    }
    if _guardrail_action(exchange) == "INTERVENED":
        document["guardrailAction"] = "INTERVENED"
    return document


def _rag_stream(exchange: _Exchange) -> _Response:
    """``output`` text pieces, a ``citation`` event after each cited part, ``guardrail``."""
    body = _mapping(exchange.body)
    text, citations = _generated(exchange)
    events: list[tuple[str, _JsonObject]] = []
    if _guardrail_action(exchange) == "INTERVENED":
        events.append(("guardrail", {"action": "INTERVENED"}))
    parts = [c["generatedResponsePart"]["textResponsePart"]["text"] for c in citations] or [text]
    for position, part in enumerate(parts):
        lead = " " if position else ""
        events.extend(("output", {"text": piece}) for piece in _word_pieces(lead + part))
        if position < len(citations):
            citation = citations[position]
            # The service repeats the citation's members at the top level of the event.
            events.append(("citation", {"citation": citation, **citation}))
    headers = {"x-amzn-bedrock-knowledge-base-session-id": _session_id(body)}
    return _Response(headers, messages=[event_message(name, payload) for name, payload in events])


# --- Rerank --------------------------------------------------------------------------------


def _document_text(document: Mapping[str, Any]) -> str:
    if "textDocument" in document:
        return _str(_mapping(document["textDocument"]).get("text"))
    return json.dumps(document.get("jsonDocument"), ensure_ascii=False, sort_keys=True)


def _rerank(exchange: _Exchange) -> _JsonObject:
    body = _mapping(exchange.body)
    queries = _list(body.get("queries"))
    query = _str(_mapping(_mapping(queries[0] if queries else {}).get("textQuery")).get("text"))
    sources = [
        _mapping(_mapping(s).get("inlineDocumentSource")) for s in _list(body.get("sources"))
    ]
    bedrock = _mapping(
        _mapping(body.get("rerankingConfiguration")).get("bedrockRerankingConfiguration")
    )
    count = bedrock.get("numberOfResults")
    ranked = sorted(
        (
            (index, _relevance(query, _document_text(source)))
            for index, source in enumerate(sources)
        ),
        key=lambda item: -item[1],
    )
    if isinstance(count, int) and not isinstance(count, bool):
        ranked = ranked[: max(0, count)]
    results = [
        {"index": index, "relevanceScore": score, "document": dict(sources[index])}
        for index, score in ranked
    ]
    return {"results": results}


_JSON_OPERATIONS: Final = {
    "retrieve": _retrieve,
    "retrieve_and_generate": _retrieve_and_generate,
    "rerank": _rerank,
}


def _respond(exchange: _Exchange) -> _Response:
    """The response of a knowledge-base operation."""
    operation = exchange.route.operation
    if operation == "retrieve_and_generate_stream":
        return _rag_stream(exchange)
    answer_body = exchange.answer.body
    document = (
        dict(answer_body) if answer_body is not None else _JSON_OPERATIONS[operation](exchange)
    )
    return _Response({"Content-Type": _JSON}, document=_json_bytes(document))


def _knowledge_base_text(passages: Sequence[_JsonObject]) -> str:
    """The passages as an agent's knowledge-base answer quotes them."""
    return " ".join(_str(_mapping(p.get("content")).get("text")) for p in passages)
