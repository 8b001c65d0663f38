"""Input decoding: raster images, DICOM objects and zipped DICOM series."""
