"""The browser side of Pygmy: a storefront and a live cluster dashboard, served by the frontend."""

from pygmy.web.routes import add_web_routes

__all__ = ["add_web_routes"]
