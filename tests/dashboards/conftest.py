"""Dashboard tests share the integration tests' loopback Prometheus (``start_prometheus``)."""

from tests.integration.conftest import start_prometheus

__all__ = ["start_prometheus"]
