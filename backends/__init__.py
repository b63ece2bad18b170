"""One module per backend: each translates a routing request to one model's wire and back.

The registry that maps a config's `type` to these modules is `tui.core.registry`; the
contract every backend implements (its results and errors) is `tui.core.backend`.
"""

import tui  # noqa: E402, F401  (first: tui loads llama.cpp's CUDA libraries before numpy's)
