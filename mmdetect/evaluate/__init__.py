"""Model-independent evaluation: predictions in; metrics, bootstrap, slices, thresholds, reports
out (docs/metrics-schema.md). Imports policy, data, common; never a model.
"""

from mmdetect.evaluate.compare import compare
from mmdetect.evaluate.config import EvalConfig, EvaluationError, load_eval_config
from mmdetect.evaluate.predictions import (
    PredictionRecord,
    prediction_from_listing,
    read_predictions,
    records_to_arrays,
    write_predictions,
)
from mmdetect.evaluate.report import format_console, write_report
from mmdetect.evaluate.run import (
    SCHEMA_VERSION,
    evaluate_predictions_main,
    evaluate_records,
    run_evaluation,
)

__all__ = [
    "SCHEMA_VERSION",
    "EvalConfig",
    "EvaluationError",
    "PredictionRecord",
    "compare",
    "evaluate_predictions_main",
    "evaluate_records",
    "format_console",
    "load_eval_config",
    "prediction_from_listing",
    "read_predictions",
    "records_to_arrays",
    "run_evaluation",
    "write_predictions",
    "write_report",
]
