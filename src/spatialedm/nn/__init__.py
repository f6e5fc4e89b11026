"""Neural network building blocks of :class:`~spatialedm.SpatialEDM`."""

from ._denoiser import ResidualDenoiser
from ._encoder import ExpressionEncoder
from ._generator import LayoutGenerator
from ._set_attention import ISAB, MAB, SetContextEncoder

__all__ = ["ISAB", "MAB", "ExpressionEncoder", "LayoutGenerator", "ResidualDenoiser", "SetContextEncoder"]
