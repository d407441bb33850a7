"""The plugin API: everything a tk plugin may import. Anything not named here is private to tk.

    from toolkit.api import DatasetInfo, LabelMapping, hookimpl, load_table

Built-in plugins import only this module (a test checks), exactly as a
third-party plugin would. docs/hooks.md documents each name.
"""

from toolkit import hookimpl
from toolkit.attention import bf16_attention, register_attention
from toolkit.config import TaskConfig
from toolkit.data.columns import standard_columns
from toolkit.data.files import (
    builder_for,
    class_folders,
    find_split_files,
    load_builder,
    load_class_folders,
    load_table,
    read_table_file,
    split_files,
)
from toolkit.data.rows import column, row_numbers, rows_named
from toolkit.errors import TkError
from toolkit.evaluation import counts as metric_counts
from toolkit.evaluation import intervals
from toolkit.evaluation import multilabel as multilabel_scores
from toolkit.evaluation.inference import predict_probabilities, rows_per_batch
from toolkit.hub import hub_reachable, require_hub
from toolkit.models import load_classifier, load_tokenizer
from toolkit.records import (
    DatasetInfo,
    DataSource,
    EngineInfo,
    EpochRecord,
    LabelMapping,
    LengthStats,
    ModelInfo,
    Setting,
    TrainResult,
    WithNotes,
)
from toolkit.training import policy
from toolkit.training.device import attention_kernel, use_bf16
from toolkit.training.distributed import sum_gradients, world_size
from toolkit.training.progress import Progress
from toolkit.training.strategy import StepPlan, StepStrategy

__all__ = [
    # writing a plugin
    "hookimpl", "TkError",
    # records: what plugins register and return
    "DatasetInfo", "ModelInfo", "EngineInfo", "Setting", "DataSource", "LabelMapping", "LengthStats",
    "EpochRecord", "TrainResult", "TaskConfig", "WithNotes",
    # dataset plugins: local files
    "builder_for", "split_files", "load_builder", "load_table", "standard_columns", "read_table_file",
    "find_split_files", "class_folders", "load_class_folders", "column",
    "row_numbers", "rows_named",
    # model plugins: the Hub and pretrained models
    "hub_reachable", "require_hub", "load_tokenizer", "load_classifier",
    # metrics plugins: per-class counts, multi-label scores and honest intervals
    "metric_counts", "multilabel_scores", "intervals",
    # training engines: a step strategy, the shared policy, and the pieces a strategy uses
    "StepStrategy", "StepPlan", "policy", "sum_gradients", "Progress", "predict_probabilities", "rows_per_batch",
    "use_bf16", "attention_kernel", "bf16_attention", "register_attention", "world_size",
]
