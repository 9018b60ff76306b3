"""Function approximation (PROTOCOL 4 and 6): MGDL vs SGDL vs MSDL, tables and figures."""

from .msdl import MSDLConfig, MSDLModel, fit_msdl
from .study import MODELS, SETTINGS, Setting, run_setting

__all__ = ["MODELS", "SETTINGS", "MSDLConfig", "MSDLModel", "Setting", "fit_msdl", "run_setting"]
