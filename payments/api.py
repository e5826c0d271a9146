"""The merchant API (``/api/v1/``): checkout sessions, payments and refunds.

Thin views: they parse input with the serializers in ``payments.api_serializers``,
call ``payments.services`` and ``payments.selectors`` scoped to the calling
merchant (``api_merchant``), and render the result. Another merchant's id is a
404. Every POST honours ``Idempotency-Key`` (``payments.idempotency``).

An API key sees the objects of its own mode (a test key, test objects); a
signed-in team member (session verified with the second factor) sees both.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, permissions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import merchant_roles
from accounts.api_auth import MerchantApiAccess, api_merchant
from accounts.models import ApiKey, Merchant
from accounts.otp import otp_is_recent
from payments import api_pagination, selectors, services
from payments.api_serializers import (
    CheckoutSessionCreateSerializer,
    CheckoutSessionList,
    CheckoutSessionSerializer,
    ErrorSerializer,
    PaymentList,
    PaymentSerializer,
    RefundCreateSerializer,
    RefundList,
    RefundSerializer,
)
from payments.idempotency import HEADER as IDEMPOTENCY_HEADER
from payments.idempotency import idempotency_reserve_id, run_idempotent
from payments.models import CheckoutSession, IdempotencyRecord, Payment, Refund
from security.crypto import preload_keys
from security.errors import ApplicationError, NotFound, PermissionDeniedError
from security.ids import new_public_id

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_HEADER,
    str,
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "Any unique string up to 255 characters (a UUID is ideal). Retrying a POST with the same key and "
        "the same body returns the first response again (with Idempotent-Replayed: true) instead of doing "
        "the work twice. The same key with a different body answers 409 idempotency_key_reused; while the "
        "first request is still running, 409 idempotency_key_in_use. Keys are per API key (or user) and "
        "are kept for 24 hours."
    ),
)


def _errors(*codes: int) -> dict[int, OpenApiResponse]:
    descriptions = {
        400: "Invalid request: code invalid_request with per-field messages, or a specific code.",
        401: "Missing, invalid, expired or revoked API key.",
        403: "Read-only key, read-only role, or a fresh second factor needed.",
        404: "No such object for this merchant.",
        409: "Conflict: illegal state change, or an Idempotency-Key reused or in use.",
        429: "Rate limit reached; see Retry-After.",
    }
    return {code: OpenApiResponse(ErrorSerializer, description=descriptions[code]) for code in codes}


class MerchantApiView(APIView):
    permission_classes = [MerchantApiAccess]

    def merchant(self, request: Request) -> Merchant:
        merchant = api_merchant(request)
        if merchant is None:  # MerchantApiAccess lets no such request through
            raise exceptions.PermissionDenied("This API needs a merchant.")
        return merchant

    def key_mode(self, request: Request) -> str | None:
        """The mode an API key is limited to; None for a team member's session (sees both)."""
        return request.auth.mode if isinstance(request.auth, ApiKey) else None

    def in_mode(self, request: Request, qs: QuerySet[Any], field: str = "mode") -> QuerySet[Any]:
        mode = self.key_mode(request)
        return qs.filter(**{field: mode}) if mode else qs

    def actor(self, request: Request) -> Any:
        """A user, or the API key's principal (audit events name the key)."""
        return request.user

    def session(self, request: Request, public_id: str) -> CheckoutSession:
        session = (
            self.in_mode(request, selectors.checkout_sessions_for(self.merchant(request)))
            .filter(public_id=public_id)
            .first()
        )
        if session is None:
            raise NotFound("No such checkout session.")
        return session


def _filter_choice(request: Request, name: str, choices: list[str]) -> str | None:
    value = request.query_params.get(name)
    if value in (None, ""):
        return None
    if value not in choices:
        raise serializers.ValidationError({name: [f"Must be one of: {', '.join(choices)}."]})
    return value


def _page(request: Request, base: QuerySet[Any], filtered: QuerySet[Any], serializer: Any) -> Response:
    rows, has_more, links = api_pagination.keyset_page(request, base, filtered)
    preload_keys([r.customer for r in rows if getattr(r, "customer", None) is not None])
    body = api_pagination.page_body(request, serializer(rows, many=True).data, has_more, links)
    return Response(body)


# --- Checkout sessions ---------------------------------------------------------------------------


class CheckoutSessionListCreate(MerchantApiView):
    api_actions = {"POST": merchant_roles.LINKS_MANAGE}

    @extend_schema(
        operation_id="checkout_sessions_list",
        summary="List checkout sessions",
        parameters=[
            *api_pagination.PARAMETERS,
            OpenApiParameter(
                "status", str, enum=CheckoutSession.Status.values, description="Only this status."
            ),
        ],
        responses={200: CheckoutSessionList, **_errors(400, 401, 403, 429)},
        tags=["Checkout sessions"],
    )
    def get(self, request: Request) -> Response:
        base = self.in_mode(request, selectors.checkout_sessions_for(self.merchant(request)))
        status = _filter_choice(request, "status", CheckoutSession.Status.values)
        filtered = base.filter(status=status) if status else base
        return _page(request, base, filtered, CheckoutSessionSerializer)

    @extend_schema(
        operation_id="checkout_sessions_create",
        summary="Create a checkout session (a payment link)",
        parameters=[IDEMPOTENCY_PARAMETER],
        request=CheckoutSessionCreateSerializer,
        responses={201: CheckoutSessionSerializer, **_errors(400, 401, 403, 409, 429)},
        tags=["Checkout sessions"],
    )
    def post(self, request: Request) -> Response:
        merchant = self.merchant(request)
        return run_idempotent(
            request, merchant=merchant, handler=lambda record: self._create(request, merchant)
        )

    def _create(self, request: Request, merchant: Merchant) -> Response:
        form = CheckoutSessionCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        mode = self.key_mode(request)
        with transaction.atomic():
            session = services.checkout_session_create(
                actor=self.actor(request),
                merchant=merchant,
                amount=data["amount"],
                currency=data["currency"],
                description=data["description"],
                customer_email=data["customer_email"],
                expires_in=timedelta(seconds=data["expires_in"]),
                via="api",
            )
            if mode and session.mode != mode:
                # Rolled back with the session: a test key never makes live links, nor a live key test ones.
                raise ApplicationError(
                    f"This is a {mode} key, but this account takes {session.mode} payments; "
                    f"use a {session.mode} key.",
                    code="mode_mismatch",
                )
        return Response(CheckoutSessionSerializer(session).data, status=201)


class CheckoutSessionDetail(MerchantApiView):
    @extend_schema(
        operation_id="checkout_sessions_retrieve",
        summary="Retrieve a checkout session",
        responses={200: CheckoutSessionSerializer, **_errors(401, 403, 404, 429)},
        tags=["Checkout sessions"],
    )
    def get(self, request: Request, public_id: str) -> Response:
        return Response(CheckoutSessionSerializer(self.session(request, public_id)).data)


class CheckoutSessionExpire(MerchantApiView):
    api_actions = {"POST": merchant_roles.LINKS_MANAGE}

    @extend_schema(
        operation_id="checkout_sessions_expire",
        summary="Expire an open checkout session now",
        parameters=[IDEMPOTENCY_PARAMETER],
        request=None,
        responses={200: CheckoutSessionSerializer, **_errors(401, 403, 404, 409, 429)},
        tags=["Checkout sessions"],
    )
    def post(self, request: Request, public_id: str) -> Response:
        merchant = self.merchant(request)
        return run_idempotent(
            request, merchant=merchant, handler=lambda record: self._expire(request, public_id)
        )

    def _expire(self, request: Request, public_id: str) -> Response:
        session = self.session(request, public_id)
        expired = services.checkout_session_expire(actor=self.actor(request), session=session)
        expired.customer = session.customer
        return Response(CheckoutSessionSerializer(expired).data)


# --- Payments -------------------------------------------------------------------------------------


class PaymentListView(MerchantApiView):
    @extend_schema(
        operation_id="payments_list",
        summary="List payments",
        parameters=[
            *api_pagination.PARAMETERS,
            OpenApiParameter("status", str, enum=Payment.Status.values, description="Only this status."),
            OpenApiParameter("checkout_session", str, description="Only payments of this checkout session."),
        ],
        responses={200: PaymentList, **_errors(400, 401, 403, 429)},
        tags=["Payments"],
    )
    def get(self, request: Request) -> Response:
        base = self.in_mode(request, selectors.payments_for(self.merchant(request)))
        filtered = base
        status = _filter_choice(request, "status", Payment.Status.values)
        if status:
            filtered = filtered.filter(status=status)
        session_id = request.query_params.get("checkout_session")
        if session_id:
            filtered = filtered.filter(checkout_session__public_id=session_id)
        return _page(request, base, filtered, PaymentSerializer)


class PaymentDetail(MerchantApiView):
    @extend_schema(
        operation_id="payments_retrieve",
        summary="Retrieve a payment",
        responses={200: PaymentSerializer, **_errors(401, 403, 404, 429)},
        tags=["Payments"],
    )
    def get(self, request: Request, public_id: str) -> Response:
        payment = (
            self.in_mode(request, selectors.payments_for(self.merchant(request)))
            .filter(public_id=public_id)
            .first()
        )
        if payment is None:
            raise NotFound("No such payment.")
        return Response(PaymentSerializer(payment).data)


# --- Refunds --------------------------------------------------------------------------------------


class TeamRefunderWithRecentOTP(permissions.BasePermission):
    """Refunding from a team session (not an API key) takes a code entered in the last 5 minutes,
    as in the dashboard; who may refund at all is the role table's (``MerchantApiAccess``, before
    this). Checked before the Idempotency-Key is taken, so a refused request stores nothing."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method in permissions.SAFE_METHODS or isinstance(request.auth, ApiKey):
            return True
        if not otp_is_recent(request._request, 5):
            raise PermissionDeniedError(
                "Confirm with a fresh authentication code before refunding.", code="recent_otp_required"
            )
        return True


class RefundListCreate(MerchantApiView):
    permission_classes = [*MerchantApiView.permission_classes, TeamRefunderWithRecentOTP]
    api_actions = {"POST": merchant_roles.PAYMENTS_REFUND}

    @extend_schema(
        operation_id="refunds_list",
        summary="List refunds",
        parameters=[
            *api_pagination.PARAMETERS,
            OpenApiParameter("payment", str, description="Only refunds of this payment (pay_…)."),
            OpenApiParameter("status", str, enum=Refund.Status.values, description="Only this status."),
        ],
        responses={200: RefundList, **_errors(400, 401, 403, 429)},
        tags=["Refunds"],
    )
    def get(self, request: Request) -> Response:
        base = self.in_mode(request, selectors.refunds_for(self.merchant(request)), field="payment__mode")
        filtered = base
        payment_id = request.query_params.get("payment")
        if payment_id:
            filtered = filtered.filter(payment__public_id=payment_id)
        status = _filter_choice(request, "status", Refund.Status.values)
        if status:
            filtered = filtered.filter(status=status)
        return _page(request, base, filtered, RefundSerializer)

    @extend_schema(
        operation_id="refunds_create",
        summary="Refund all or part of a payment",
        description=(
            "Never more than was captured, counting refunds still pending; the same limits as the dashboard. "
            "Team members need a role the role table lets refund (owner or admin) and a second factor "
            "entered in the last 5 minutes; an API key needs the write scope and a creator whose current "
            "role may refund. If the payment provider's answer is lost, the refund is answered with status "
            "`pending` and confirmed later (it is never sent twice); while it is, other refunds of the "
            "payment are refused with 409 `refund_unconfirmed`."
        ),
        parameters=[IDEMPOTENCY_PARAMETER],
        request=RefundCreateSerializer,
        responses={201: RefundSerializer, **_errors(400, 401, 403, 404, 409, 429)},
        tags=["Refunds"],
    )
    def post(self, request: Request) -> Response:
        merchant = self.merchant(request)
        return run_idempotent(
            request, merchant=merchant, handler=lambda record: self._create(request, merchant, record)
        )

    def _create(self, request: Request, merchant: Merchant, record: IdempotencyRecord | None) -> Response:
        form = RefundCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        payment = (
            self.in_mode(request, selectors.payments_for(merchant)).filter(public_id=data["payment"]).first()
        )
        if payment is None:
            raise NotFound("No such payment.")
        refund_id = None
        if record is not None:
            refund_id = idempotency_reserve_id(record=record, make_id=lambda: new_public_id("re"))
        refund = services.refund_create(
            actor=self.actor(request),
            payment=payment,
            amount=data.get("amount"),
            reason=data["reason"],
            refund_public_id=refund_id,
            via="api",
        )
        refund.payment = payment
        return Response(RefundSerializer(refund).data, status=201)


class RefundDetail(MerchantApiView):
    @extend_schema(
        operation_id="refunds_retrieve",
        summary="Retrieve a refund",
        responses={200: RefundSerializer, **_errors(401, 403, 404, 429)},
        tags=["Refunds"],
    )
    def get(self, request: Request, public_id: str) -> Response:
        refund = (
            self.in_mode(request, selectors.refunds_for(self.merchant(request)), field="payment__mode")
            .filter(public_id=public_id)
            .first()
        )
        if refund is None:
            raise NotFound("No such refund.")
        return Response(RefundSerializer(refund).data)
