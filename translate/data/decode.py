"""The decoding rules of ``translate.imageio``, under the names the dataset modules import."""

from translate.imageio import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    BadImageError,
    check_image,
    parse_color,
    read_image,
    to_mode,
)

__all__ = ["DEFAULT_MAX_PIXELS", "IMAGE_EXTENSIONS", "BadImageError", "check_image", "parse_color", "read_image",
           "to_mode"]
