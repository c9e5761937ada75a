"""The lattice dashboard: a web page at :4000 that watches and steers the lattice (docs/dashboard.md)."""

from waft.dashboard.server import Dashboard, DashboardConfig, serve_dashboard

__all__ = ["Dashboard", "DashboardConfig", "serve_dashboard"]
