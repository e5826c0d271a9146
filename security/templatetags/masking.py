"""Template filters: ``{% load masking %}`` then ``mask_card``, ``mask_email``, ``mask_phone``, ``mask``."""

from __future__ import annotations

from django import template

from security import masking

register = template.Library()

register.filter("mask_card", masking.mask_card)
register.filter("mask_email", masking.mask_email)
register.filter("mask_phone", masking.mask_phone)
register.filter("mask", masking.mask_text)
