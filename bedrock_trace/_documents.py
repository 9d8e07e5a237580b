"""Knowledge-base results as MLflow ``Document``s, so the MLflow UI lists them as passages.

A retrieved result (``KnowledgeBaseRetrievalResult`` of Retrieve, ``RetrievedReference`` of
citations and of an agent's ``knowledgeBaseLookupOutput``) looks like::

    {"content": {"type": "TEXT", "text": "Returns are accepted within 30 days."},
     "location": {"type": "S3", "s3Location": {"uri": "s3://docs/returns.pdf"}},
     "metadata": {"x-amz-bedrock-kb-chunk-id": "1%3A0%3Aabc", ...},
     "score": 0.87}

It becomes ``Document(page_content, metadata={"doc_uri", "location_type", "score", ...})``
in its dict form. Non-text content (images, table rows, audio, video) becomes text or a
placeholder, never raw bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from mlflow.entities import Document

from bedrock_trace._payload import json_safe

# RetrievalResultLocation: where the URI (or, for custom and SQL sources, the id or query)
# lives for each location type (Bedrock Agents Runtime API reference).
_LOCATIONS = (
    ("s3Location", "uri"),
    ("webLocation", "url"),
    ("confluenceLocation", "url"),
    ("sharePointLocation", "url"),
    ("salesforceLocation", "url"),
    ("kendraDocumentLocation", "uri"),
    ("customDocumentLocation", "id"),
    ("sqlLocation", "query"),
)
_CHUNK_ID = "x-amz-bedrock-kb-chunk-id"


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def doc_uri(location: Any) -> str | None:
    """The URI (URL, id or query) of a ``RetrievalResultLocation``."""
    location = _dict(location)
    for key, field in _LOCATIONS:
        value = _dict(location.get(key)).get(field)
        if isinstance(value, str):
            return value
    return None


def _page_content(content: Any, include_binary: bool) -> str:
    content = _dict(content)
    if isinstance(text := content.get("text"), str):
        return text
    row = content.get("row")
    if isinstance(row, list):
        cells = (_dict(cell) for cell in row)
        return "\n".join(f"{cell.get('columnName')}: {cell.get('columnValue')}" for cell in cells)
    if isinstance(data := content.get("byteContent"), str):
        # A base64 data URI (images): a placeholder unless binary content is wanted.
        value = json_safe(data, include_binary, base64_strings=True)
        return value if isinstance(value, str) else ""
    for key, text_key in (("audio", "transcription"), ("video", "summary")):
        media = _dict(content.get(key))
        if isinstance(text := media.get(text_key), str):
            return text
        if media:
            return f"[{key} {media.get('s3Uri', '')}]".replace(" ]", "]")
    return ""


def to_document(result: Any, include_binary: bool) -> dict[str, Any]:
    """One retrieved result as the dict form of an MLflow ``Document``."""
    result = _dict(result)
    source = json_safe(dict(_dict(result.get("metadata"))), include_binary)
    metadata: dict[str, Any] = dict(source) if isinstance(source, dict) else {}
    location = _dict(result.get("location"))
    if (uri := doc_uri(location)) is not None:
        metadata["doc_uri"] = uri
    if isinstance(kind := location.get("type"), str):
        metadata["location_type"] = kind
    score = result.get("score")
    if isinstance(score, (int, float)) and not isinstance(score, bool):
        metadata["score"] = score
    chunk_id = metadata.get(_CHUNK_ID)
    document = Document(
        page_content=_page_content(result.get("content"), include_binary),
        metadata=metadata,
        id=chunk_id if isinstance(chunk_id, str) else None,
    )
    return document.to_dict()


def unique_references(citations: Iterable[Any]) -> list[Any]:
    """The retrieved references of citations, each once, in order of first appearance."""
    seen: set[str] = set()
    references = []
    for citation in citations:
        for reference in _dict(citation).get("retrievedReferences") or ():
            key = json.dumps(json_safe(reference), sort_keys=True, default=str)
            if key not in seen:
                seen.add(key)
                references.append(reference)
    return references
