"""A fitted Spark MLlib PipelineModel → ONNX through onnxmltools' Spark converter, so DuckDB (or Spark through
onnxruntime) scores it like any other model.

The converter gives each raw column the pipeline reads its own [N,1] input named after it, so PREDICT binds them
by name with no metadata; a classifier's `probability` is its [N,C] output. The sample is a Spark DataFrame with
those columns; only the columns the pipeline reads become inputs.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from typing import Any

import onnx
from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame

from predictsql.engine.errors import ExportError
from predictsql.engine.export import Converted, finish


def export(pipeline: Any, sample: Any, outputs: Mapping[str, str] | Sequence[str] | None) -> bytes:
    """`pipeline` (a fitted PipelineModel) as ONNX bytes; `sample` is a Spark DataFrame of its input columns."""
    try:
        from onnxmltools import convert_sparkml
        from onnxmltools.convert.sparkml.utils import buildInitialTypesSimple
    except ImportError as e:
        raise ExportError(f"exporting a Spark MLlib model needs {(e.name or 'onnxmltools').split('.')[0]}: pip install 'predictsql[spark]'") from e
    if not isinstance(pipeline, PipelineModel):
        raise ExportError(f"export takes a fitted Spark MLlib PipelineModel (Pipeline(stages=[...]).fit(df)), not a {type(pipeline).__name__}")
    if not isinstance(sample, DataFrame):
        raise ExportError("exporting a Spark MLlib PipelineModel needs sample=<a Spark DataFrame with the columns it reads>")
    columns = raw_inputs(pipeline)
    missing = [c for c in columns if c not in sample.columns]
    if missing:
        raise ExportError(f"the pipeline reads columns {missing}, which the sample does not have; its columns are {sample.columns}")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the converter prints each linear model's attributes
            initial = [(name, type(kind)([None, *kind.shape[1:]])) for name, kind in buildInitialTypesSimple(sample.select(*columns))]  # strings come as [1,1]
            model = convert_sparkml(pipeline, "predictsql", initial, spark_session=sample.sparkSession)
    except (RuntimeError, ValueError, TypeError, KeyError) as e:  # onnxmltools signals an unsupported stage or setting so
        raise ExportError(f"onnxmltools cannot convert this pipeline ({type(e).__name__}: {e})") from e
    _softmax_for_multinomial(model)
    last = pipeline.stages[-1]
    classes = list(range(last.numClasses)) if hasattr(last, "numClasses") else None
    return finish(Converted(model, {}, classes), outputs, type(last).__name__)


def _softmax_for_multinomial(model: onnx.ModelProto) -> None:
    """onnxmltools 1.16 writes a multinomial LogisticRegression as per-class LOGISTIC scores, L1-normalised; Spark
    computes a softmax (measured: 0.5 off in probability on iris). SOFTMAX scores sum to 1, so the L1 step is then a no-op."""
    for node in model.graph.node:
        attributes = {a.name: a for a in node.attribute}
        labels = attributes.get("classlabels_ints")
        transform = attributes.get("post_transform")
        if node.op_type == "LinearClassifier" and labels is not None and len(labels.ints) > 2 and transform is not None and transform.s == b"LOGISTIC":
            transform.s = b"SOFTMAX"


def raw_inputs(pipeline: PipelineModel) -> list[str]:
    """The columns a pipeline reads from its input DataFrame: each stage's input columns not made by an earlier stage."""
    made: set[str] = set()
    reads: list[str] = []
    for stage in pipeline.stages:
        for name in _columns(stage, ("inputCol", "featuresCol"), ("inputCols",)):
            if name not in made and name not in reads:
                reads.append(name)
        made.update(_columns(stage, ("outputCol", "predictionCol", "probabilityCol", "rawPredictionCol"), ("outputCols",)))
    return reads


def _columns(stage: Any, single: Sequence[str], several: Sequence[str]) -> list[str]:
    """The values a stage sets (or defaults) for column-naming params."""
    names = [stage.getOrDefault(p) for p in single if stage.hasParam(p) and stage.isDefined(stage.getParam(p))]
    for p in several:
        if stage.hasParam(p) and stage.isDefined(stage.getParam(p)):
            names += list(stage.getOrDefault(p))
    return [str(n) for n in names]
