"""Inference: ``Translator`` (a model directory → translated images of any size), folder conversion, export."""

from translate.inference.translator import Translator

__all__ = ["Translator"]
