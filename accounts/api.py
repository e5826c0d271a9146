from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


class MeSerializer(serializers.Serializer):
    id = serializers.CharField()
    email = serializers.EmailField()
    merchant = serializers.CharField(allow_null=True)
    role = serializers.CharField(allow_null=True)


class MeView(APIView):
    """Who the current session belongs to."""

    @extend_schema(responses=MeSerializer)
    def get(self, request: Request) -> Response:
        membership = getattr(request._request, "membership", None)
        data = {
            "id": request.user.public_id,
            "email": request.user.email,
            "merchant": membership.merchant.public_id if membership else None,
            "role": membership.role if membership else None,
        }
        return Response(MeSerializer(data).data)
