"""A /predict request body: read within the size limit, parsed, and checked, each problem a 4xx with a message."""

from __future__ import annotations

import json
from typing import Any

from toolkit.errors import suggest

EXAMPLE = 'send {"text": "..."} or {"texts": ["...", "..."]}'


class BadRequest(Exception):
    """A request tk serve refuses: its HTTP status, a message for the client and a short reason for /metrics."""

    def __init__(self, status: int, message: str, reason: str) -> None:
        super().__init__(message)
        self.status, self.message, self.reason = status, message, reason


async def read_body(request: Any, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` bytes: from Content-Length before
    reading, else while it streams in (a chunked body has none)."""
    too_large = BadRequest(413, f"the request body is over the limit of {limit:,} bytes (tk serve --max-body); "
                                "send fewer or shorter texts per request", "body_too_large")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    parts, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        parts.append(chunk)
    return b"".join(parts)


def texts_of(body: bytes, max_texts: int) -> list[str]:
    """The texts a /predict body asks about: ``{"text": str}`` or ``{"texts": [str, ...]}``."""
    if not body.strip():
        raise BadRequest(400, f"the body is empty; {EXAMPLE}", "malformed_json")
    try:
        document = json.loads(body)
    except ValueError as error:  # JSONDecodeError, and UnicodeDecodeError for bytes that are not UTF-8/16/32
        raise BadRequest(400, f"the body is not valid JSON ({error}); {EXAMPLE}", "malformed_json") from None
    except RecursionError:  # arrays nested thousands deep: the parser's own recursion runs out
        raise BadRequest(400, f"the body nests JSON arrays or objects too deep to read; {EXAMPLE}",
                         "malformed_json") from None
    if not isinstance(document, dict):
        raise BadRequest(422, f"the body is a JSON {type_name(document)}, not an object; {EXAMPLE}", "not_an_object")
    unknown = sorted(set(document) - {"text", "texts"})
    if unknown:  # e.g. {"min_confidence": 0.9}: answered as if it were honoured, it would mislead
        advice = (" Each answer carries every probability: abstain or threshold on them in the client."
                  if "text" in document or "texts" in document else suggest(unknown[0], ("text", "texts")))
        raise BadRequest(422, f"the body has {', '.join(repr(k) for k in unknown)}, which tk serve does not read; "
                              f"{EXAMPLE}.{advice}".rstrip("."), "unknown_field")
    if ("text" in document) == ("texts" in document):
        which = "both 'text' and 'texts'" if "text" in document else "neither 'text' nor 'texts'"
        raise BadRequest(422, f"the body has {which}; {EXAMPLE}", "no_text")
    if "text" in document:
        return [checked(document["text"], "'text'")]
    texts = document["texts"]
    if not isinstance(texts, list):
        raise BadRequest(422, f"'texts' is a JSON {type_name(texts)}, not a list of strings; {EXAMPLE}", "not_a_list")
    if not texts:
        raise BadRequest(422, f"'texts' is an empty list; {EXAMPLE} with at least one text", "empty_list")
    if len(texts) > max_texts:
        raise BadRequest(413, f"{len(texts):,} texts in one request, over the limit of {max_texts:,} "
                              "(tk serve --max-texts); split them into several requests", "too_many_texts")
    return [checked(text, f"'texts'[{index}]") for index, text in enumerate(texts)]


def checked(text: Any, where: str) -> str:
    if not isinstance(text, str):
        raise BadRequest(422, f"{where} is a JSON {type_name(text)}, not a string", "not_a_string")
    if not text.strip():  # as tk predict: a model answers for an empty text with nothing to go on
        raise BadRequest(422, f"{where} is empty; give each text to label", "empty_text")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:  # "\ud800" is valid JSON but no text: a half of a UTF-16 pair
        raise BadRequest(422, f"{where} is not valid Unicode text (a lone surrogate {text[error.start]!r} at "
                              f"character {error.start + 1}); send the text as UTF-8", "not_unicode") from None
    return text


def type_name(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
