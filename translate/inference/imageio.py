"""The reading and writing rules of ``translate.imageio``, under the names folder conversion imports."""

from translate.fileio import TMP_PREFIX
from translate.imageio import (
    DEFAULT_MAX_PIXELS,
    BadImageError,
    ImageFile,
    array_to_pil,
    encode_png16,
    icc_fits,
    output_suffix,
    pil_to_array,
    write_image,
)
from translate.imageio import OUTPUT_FORMATS as FORMATS
from translate.imageio import read_image_file as read_image

__all__ = ["DEFAULT_MAX_PIXELS", "FORMATS", "TMP_PREFIX", "BadImageError", "ImageFile", "array_to_pil", "encode_png16",
           "icc_fits", "output_suffix", "pil_to_array", "read_image", "write_image"]
