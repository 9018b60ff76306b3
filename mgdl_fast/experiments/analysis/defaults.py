"""The analyses' defaults, as the papers' code runs them (PROTOCOL 4 and 5)."""

from typing import Any

# PROTOCOL 4's eigenvalue experiments: network sizes, the authors' BEST step sizes, their early
# stop (record interval, relative tolerance) and where the eigenvalue stopping rule is used.
EIG_DEFAULTS: dict[str, dict[str, Any]] = {
    "synthetic": {
        "width": 32,
        "layers": 1,
        "downsample": 1,
        "record_every": 10,
        "eta": {"mgdl": 6e-2, "sgdl": 5e-3},
        "rel_tol": {"mgdl": 1e-6, "sgdl": 1e-6},
        "eig_stop": {"mgdl": None, "sgdl": None},
    },
    "image": {
        "width": 48,
        "layers": 1,
        "downsample": 2,
        "record_every": 100,
        "eta": {"mgdl": 2e-1, "sgdl": 5e-2},
        "rel_tol": {"mgdl": 1e-5, "sgdl": 1e-4},
        "eig_stop": {"mgdl": -0.95, "sgdl": None},
    },
}

# The Adam stability analysis (analysis.adam): the papers' Adam learning rate (PROTOCOL 2).
ADAM_EIG_LR = 1e-3

# PROTOCOL 5: the image study uses PROTOCOL 2's networks (4 x [128, 128] / 8 x 128) with stax's
# Glorot init; the synthetic study PROTOCOL 4's (width 32, one layer per grade) with He init.
SWEEP_DEFAULTS: dict[str, dict[str, Any]] = {
    "synthetic": {"width": 32, "layers": 1, "init": "he"},
    "image": {"width": 128, "layers": 2, "init": "glorot"},
}
DEFAULT_LRS = {"gd": "1e-3,3e-3,1e-2,3e-2,1e-1,3e-1", "adam": "1e-4,3e-4,1e-3,3e-3,1e-2"}
