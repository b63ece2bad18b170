"""triagedesk: route support tickets through any backend and see the trade-off live."""

__version__ = "0.1.0"
