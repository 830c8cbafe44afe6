"""Training data: validated readers for the released NExT-GPT formats, a dataset, batching."""

from nextgpt.data.collate import PaddedBatch, pad_packed
from nextgpt.data.dataset import (
    EpochSeededSampler,
    NextGPTDataset,
    Sample,
    SampleBatch,
    collate_samples,
)
from nextgpt.data.records import (
    BadRecord,
    DataError,
    DatasetSource,
    InstructionRecord,
    PairRecord,
    SampleRecord,
    read_records,
)

__all__ = [
    "BadRecord",
    "DataError",
    "DatasetSource",
    "EpochSeededSampler",
    "InstructionRecord",
    "NextGPTDataset",
    "PaddedBatch",
    "PairRecord",
    "Sample",
    "SampleBatch",
    "SampleRecord",
    "collate_samples",
    "pad_packed",
    "read_records",
]
