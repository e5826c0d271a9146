"""Payment gateways behind one small protocol (see :mod:`payments.gateways.base`).

Use :func:`payments.gateways.registry.gateway_for` to get a merchant's gateway;
import the vendor modules only for their normalising helpers.
"""
