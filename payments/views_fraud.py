"""Merchant pages for fraud rules (owners and admins) and the review queue."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from accounts.merchant_roles import FRAUD_RULES_MANAGE, PAYMENTS_REVIEW
from accounts.permissions import merchant_member_required
from payments import fraud_rules, selectors
from payments.forms_fraud import FORMS, RuleForm
from payments.models import FraudRule
from security import crypto

PAGE = 50


def _rule(request: HttpRequest, public_id: str) -> FraudRule:
    rule = selectors.fraud_rule_for(request.membership.merchant, public_id)  # type: ignore[attr-defined]
    if rule is None:
        raise Http404("No such fraud rule.")
    return rule


def _apply_error(form: RuleForm, exc: fraud_rules.RuleInvalid) -> None:
    form.add_error(exc.field if exc.field in form.fields else None, exc.message)


@merchant_member_required(FRAUD_RULES_MANAGE)
def rules_list(request: HttpRequest) -> HttpResponse:
    rules = list(selectors.fraud_rules_for(request.membership.merchant))  # type: ignore[attr-defined]
    rows = [(rule, fraud_rules.describe(rule.kind, rule.parameters)) for rule in rules]
    return render(
        request,
        "payments/fraud_rules.html",
        {"rows": rows, "kinds": [(kind, FraudRule.Kind(kind).label) for kind in FORMS]},
    )


def _rule_fields(form: RuleForm) -> dict[str, Any]:
    """What every kind of rule's form gives the fraud-rule services."""
    return {
        "parameters": form.parameters(),
        "action": form.cleaned_data["action"],
        "label": form.cleaned_data["label"],
        "enabled": form.cleaned_data["enabled"],
    }


def _rule_form(
    request: HttpRequest,
    form: RuleForm,
    save: Callable[[dict[str, Any]], FraudRule],
    *,
    done: str,
    kind_label: str,
    rule: FraudRule | None,
) -> HttpResponse:
    """Save a valid submitted rule form with ``save`` and go back to the list, or show the form."""
    if request.method == "POST" and form.is_valid():
        try:
            saved = save(_rule_fields(form))
        except fraud_rules.RuleInvalid as exc:
            _apply_error(form, exc)
        else:
            messages.success(request, f"Rule “{saved.label}” {done}.")
            return redirect("payments_fraud_rules")
    return render(
        request,
        "payments/fraud_rule_form.html",
        {"form": form, "kind_label": kind_label, "rule": rule},
        status=400 if form.errors else 200,
    )


@merchant_member_required(FRAUD_RULES_MANAGE)
@require_http_methods(["GET", "POST"])
def rule_create(request: HttpRequest, kind: str) -> HttpResponse:
    form_class = FORMS.get(kind)
    if form_class is None:
        raise Http404("No such kind of rule.")
    form = form_class(request.POST if request.method == "POST" else None)
    return _rule_form(
        request,
        form,
        lambda fields: fraud_rules.fraud_rule_create(
            actor=request.user,  # type: ignore[arg-type]
            merchant=request.membership.merchant,  # type: ignore[attr-defined]
            kind=kind,
            **fields,
        ),
        done="added",
        kind_label=FraudRule.Kind(kind).label,
        rule=None,
    )


@merchant_member_required(FRAUD_RULES_MANAGE)
@require_http_methods(["GET", "POST"])
def rule_edit(request: HttpRequest, public_id: str) -> HttpResponse:
    rule = _rule(request, public_id)
    form = FORMS[rule.kind](request.POST if request.method == "POST" else None, rule=rule)
    return _rule_form(
        request,
        form,
        lambda fields: fraud_rules.fraud_rule_update(actor=request.user, rule=rule, **fields),  # type: ignore[arg-type]
        done="saved",
        kind_label=rule.get_kind_display(),
        rule=rule,
    )


@merchant_member_required(FRAUD_RULES_MANAGE)
@require_POST
def rule_toggle(request: HttpRequest, public_id: str) -> HttpResponse:
    rule = _rule(request, public_id)
    wanted = request.POST.get("enabled")
    if wanted not in ("0", "1"):
        messages.error(request, "Say whether the rule should be enabled or disabled.")
        return redirect("payments_fraud_rules")
    enable = wanted == "1"
    rule = fraud_rules.fraud_rule_set_enabled(actor=request.user, rule=rule, enabled=enable)  # type: ignore[arg-type]
    messages.success(request, f"Rule “{rule.label}” {'enabled' if rule.enabled else 'disabled'}.")
    return redirect("payments_fraud_rules")


@merchant_member_required(FRAUD_RULES_MANAGE)
@require_http_methods(["GET", "POST"])
def rule_delete(request: HttpRequest, public_id: str) -> HttpResponse:
    rule = _rule(request, public_id)
    if request.method == "POST":
        fraud_rules.fraud_rule_delete(actor=request.user, rule=rule)  # type: ignore[arg-type]
        messages.success(request, f"Rule “{rule.label}” deleted.")
        return redirect("payments_fraud_rules")
    return render(
        request,
        "payments/fraud_rule_delete.html",
        {"rule": rule, "summary": fraud_rules.describe(rule.kind, rule.parameters)},
    )


@merchant_member_required(PAYMENTS_REVIEW)
def review_queue(request: HttpRequest) -> HttpResponse:
    merchant = request.membership.merchant  # type: ignore[attr-defined]
    paginator = Paginator(selectors.review_queue_for(merchant), PAGE)
    page = paginator.get_page(request.GET.get("page"))
    payments = list(page.object_list)
    # Customers' emails are encrypted under their own keys: load the page's keys in one query.
    crypto.preload_keys([p.customer for p in payments if p.customer is not None])
    return render(
        request,
        "payments/review_queue.html",
        {"page": page, "payments": payments, "now": timezone.now()},
    )
