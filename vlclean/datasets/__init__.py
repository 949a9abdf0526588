"""Dataset sources (built-in, ImageFolder, Hugging Face Hub, MNIST-format IDX, CIFAR) and the raw parquet layout they share."""

from vlclean.datasets.raw import ConversionStats, RawDataset, RawDatasetWriter, RawRecord, Unit, folder_paths

__all__ = ["ConversionStats", "RawDataset", "RawDatasetWriter", "RawRecord", "Unit", "folder_paths"]
