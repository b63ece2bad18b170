"""triagedesk: route support tickets through any backend and see the trade-off live."""

from tui.native_preload import preload_cuda_llama

__version__ = "0.1.0"

preload_cuda_llama()  # before any other native extension loads: see tui/native_preload.py
