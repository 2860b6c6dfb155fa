"""The API schema's error answers, documented once for every operation.

Every API view needs a login (401) and may refuse a role (403); a path with parameters names a
project or an object that may not exist for the caller (404: not a member, or no such object);
a body or query parameters may be invalid (400). Views document their other answers (409, 422,
503, ...) and their own 400/404 bodies with `extend_schema`; those are kept as they are.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ErrorDetailSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What was wrong, in words.")


_FIELD_ERRORS = OpenApiResponse(
    OpenApiTypes.OBJECT,
    description="Invalid input: {field: [message, ...]}, or {detail: message}.",
)
_ERRORS = {
    "401": OpenApiResponse(ErrorDetailSerializer, description="No valid token or session."),
    "403": OpenApiResponse(ErrorDetailSerializer, description="Your role may not do this."),
}
_NOT_FOUND = OpenApiResponse(
    ErrorDetailSerializer,
    description="No such object, or not in a project you are a member of.",
)


class ErrorDocumentingAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema plus the error answers every operation can give."""

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        extra = dict(_ERRORS)
        if "{" in self.path:
            extra["404"] = _NOT_FOUND
        if self.method in ("POST", "PUT", "PATCH") or self._get_parameters_from_query():
            extra["400"] = _FIELD_ERRORS
        for code, response in extra.items():
            if code not in responses:
                responses[code] = self._get_response_for_code(response, code, None, direction)
        return responses

    def _get_parameters_from_query(self) -> bool:
        """Whether the operation documents query parameters (which may be invalid)."""
        override = self.get_override_parameters()
        return any(
            not isinstance(p, dict) and getattr(p, "location", "query") == "query" for p in override
        )
