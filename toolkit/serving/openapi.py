"""The OpenAPI 3.1 document tk serve answers at /openapi.json (the same schemas as docs/json.md)."""

from __future__ import annotations

from typing import Any

PROBABILITIES = {"type": "object", "additionalProperties": {"type": "number"},
                 "description": "each label's probability, rounded to 4 decimals"}
READ = {"cut": {"type": "boolean", "description": "the text was longer than the model reads and was cut"},
        "windows": {"type": "integer", "description": "long_text = chunks: the windows the text was read in"}}
SINGLE_LABEL_ROW = {"type": "object", "required": ["text", "label", "probabilities"],
                    "properties": {"text": {"type": "string"}, "label": {"type": "string"},
                                   "probabilities": PROBABILITIES, **READ}}
MULTI_LABEL_ROW = {"type": "object", "required": ["text", "labels", "probabilities", "thresholds"],
                   "properties": {"text": {"type": "string"},
                                  "labels": {"type": "array", "items": {"type": "string"},
                                             "description": "labels at or above their threshold, most probable first"},
                                  "probabilities": PROBABILITIES,
                                  "thresholds": {"type": "object", "additionalProperties": {"type": "number"}},
                                  **READ}}
ERROR = {"type": "object", "required": ["error", "status"],
         "properties": {"error": {"type": "string", "description": "what is wrong and how to fix it"},
                        "status": {"type": "integer"}}}


def document(labels: tuple[str, ...], multi_label: bool, max_texts: int, max_body_bytes: int,
             token: bool) -> dict[str, Any]:
    def json_response(description: str, schema: dict) -> dict:
        return {"description": description, "content": {"application/json": {"schema": schema}}}

    errors = {str(status): json_response(description, {"$ref": "#/components/schemas/Error"}) for status, description in
              [(400, "the body is not JSON"), (401, "no or a wrong bearer token"),
               (413, f"the body is over {max_body_bytes:,} bytes, or holds over {max_texts:,} texts"),
               (422, "the JSON is not {\"text\": string} or {\"texts\": [string, ...]}, or a text is empty")]}
    request = {"oneOf": [
        {"type": "object", "required": ["text"], "properties": {"text": {"type": "string", "minLength": 1}},
         "additionalProperties": False},
        {"type": "object", "required": ["texts"], "additionalProperties": False,
         "properties": {"texts": {"type": "array", "minItems": 1, "maxItems": max_texts,
                                  "items": {"type": "string", "minLength": 1}}}}]}
    answer = {"type": "object", "required": ["schema", "labels", "predictions"],
              "properties": {"schema": {"const": "tk.predict/1"}, "run_dir": {"type": "string"},
                             "backend": {"enum": ["pytorch", "onnx", "onnx-int8"]},
                             "labels": {"type": "array", "items": {"enum": list(labels)}},
                             "predictions": {"type": "array",
                                             "items": MULTI_LABEL_ROW if multi_label else SINGLE_LABEL_ROW}}}
    plain = {"type": "object", "properties": {"status": {"type": "string"}}}
    secured = [{"bearer": []}] if token else []
    return {
        "openapi": "3.1.0",
        "info": {"title": "tk serve", "version": "1",
                 "description": "A tk run's classifier: POST texts to /predict (docs/deploy.md)."},
        "paths": {
            "/predict": {"post": {"summary": "Label one text or a list, as tk predict --json does",
                                  "security": secured,
                                  "requestBody": {"required": True,
                                                  "content": {"application/json": {"schema": request}}},
                                  "responses": {"200": json_response("one prediction per text, in order", answer),
                                                **errors}}},
            "/health": {"get": {"summary": "The process is alive (no token needed)", "security": [],
                                "responses": {"200": json_response("alive", plain)}}},
            "/ready": {"get": {"summary": "The model is loaded and answers", "security": secured,
                               "responses": {"200": json_response("ready", plain),
                                             "503": json_response("not ready", plain)}}},
            "/metadata": {"get": {"summary": "Labels, the run, and the task settings that shape input",
                                  "security": secured,
                                  "responses": {"200": json_response("metadata", {"type": "object"})}}},
            "/metrics": {"get": {"summary": "Prometheus metrics (text format)", "security": secured,
                                 "responses": {"200": {"description": "Prometheus text exposition format",
                                                       "content": {"text/plain": {}}}}}},
            "/openapi.json": {"get": {"summary": "This document", "security": secured,
                                      "responses": {"200": json_response("OpenAPI 3 document", {"type": "object"})}}},
        },
        "components": {"schemas": {"Error": ERROR},
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
