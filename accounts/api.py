from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api_auth import ApiKeyPrincipal, api_merchant


class MeSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="The user's id, or the API key's id.")
    kind = serializers.ChoiceField(choices=["user", "api_key"])
    email = serializers.EmailField(allow_blank=True)
    merchant = serializers.CharField(allow_null=True)
    role = serializers.CharField(allow_null=True)
    scope = serializers.CharField(allow_null=True)


class MeView(APIView):
    """Who is calling: a signed-in user or an API key, and for which merchant."""

    @extend_schema(responses=MeSerializer, operation_id="me")
    def get(self, request: Request) -> Response:
        merchant = api_merchant(request)
        if isinstance(request.user, ApiKeyPrincipal):
            data = {
                "id": request.user.public_id,
                "kind": "api_key",
                "email": "",
                "merchant": merchant.public_id if merchant else None,
                "role": None,
                "scope": request.user.api_key.scope,
            }
        else:
            membership = getattr(request._request, "membership", None)
            data = {
                "id": request.user.public_id,
                "kind": "user",
                "email": request.user.email,
                "merchant": merchant.public_id if merchant else None,
                "role": membership.role if membership else None,
                "scope": None,
            }
        return Response(MeSerializer(data).data)
