"""scikit-learn estimators and pipelines → ONNX through skl2onnx; XGBoost and LightGBM estimators (alone or as a
pipeline's last step) through onnxmltools' converters, registered into skl2onnx.

- `zipmap=False`: class probabilities come out as one [N,C] float tensor.
- A ColumnTransformer pipeline gets one [N,1] input per DATA column (strings stay strings); any other model one
  [N,k] input named X.
- Inputs are FLOAT, but DOUBLE for a model ending in XGBoost or LightGBM: LightGBM's thresholds are doubles, and
  preprocessing in front of XGBoost must run in double before XGBoost's own float32 cast, as it does in Python;
  in float32 a scaler's rounding moves values across XGBoost's split points (measured: 0.27 off in probability).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import onnx

from predictsql.engine.errors import ExportError
from predictsql.engine.export import Columns, Converted, column_names, listed

MATRIX_INPUT = "X"
_OPSET = {"": 18, "ai.onnx.ml": 3}  # skl2onnx writes ai.onnx.ml 3 at most; onnxmltools would write 5
_BOOSTERS = ("xgboost", "lightgbm")


def convert(estimator: Any, sample: Any, columns: Columns, _library: str) -> Converted:
    """`estimator` converted with its DATA columns and class labels (see export.export)."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType

    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    double = type(final).__module__.split(".")[0] in _BOOSTERS
    number = DoubleTensorType if double else FloatTensorType
    names = None
    if _has_column_transformer(estimator):
        if sample is None:
            raise ExportError(f"{type(estimator).__name__} starts with a ColumnTransformer, which reads columns by name and type: pass sample=<a DataFrame of them>")
        initial = [(str(n), number([None, 1]) if _numeric(t) else StringTensorType([None, 1])) for n, t in sample.dtypes.items()]
    else:
        names = column_names(_fitted_names(estimator), sample, listed(columns), type(estimator).__name__)
        initial = [(MATRIX_INPUT, number([None, len(names)]))]
    options = {id(final): {"zipmap": False}} if hasattr(final, "predict_proba") else None
    if double:
        _register_boosters()
    with _hist_gradient_boosting_fixup(), _booster_names_cleared(final):
        model = to_onnx(estimator, initial_types=initial, options=options, target_opset=_OPSET)
    return Converted(model, _input_columns(model, initial, names), getattr(final, "classes_", None))


def _input_columns(model: onnx.ModelProto, initial: Sequence[tuple[str, Any]], names: Sequence[str] | None) -> dict[str, list[str]]:
    """DATA columns per ONNX input: all of them for the [N,k] input; for per-column inputs, those skl2onnx renamed
    (it sanitises names such as 'od280/od315' → 'od280_od315')."""
    if names is not None:
        return {MATRIX_INPUT: list(names)}
    inputs = [i.name for i in model.graph.input]
    if len(inputs) != len(initial):
        raise ExportError(f"skl2onnx made {len(inputs)} inputs for {len(initial)} sample columns; pass a sample with exactly the columns the pipeline reads")
    return {name: [column] for name, (column, _) in zip(inputs, initial, strict=True) if name != column}


def _fitted_names(estimator: Any) -> list[str] | None:
    """The columns a model was fitted on, if it was fitted on named columns."""
    names = getattr(estimator, "feature_names_in_", None)
    return [str(n) for n in names] if names is not None else None


def _has_column_transformer(estimator: Any) -> bool:
    from sklearn.compose import ColumnTransformer

    first = estimator.steps[0][1] if hasattr(estimator, "steps") else estimator
    return isinstance(first, ColumnTransformer)


def _numeric(dtype: Any) -> bool:
    return isinstance(dtype, np.dtype) and np.issubdtype(dtype, np.number)


@contextlib.contextmanager
def _booster_names_cleared(final: Any) -> Iterator[None]:
    """onnxmltools' XGBoost converter wants features named f0, f1, …: hide the booster's real names while it runs."""
    booster = final.get_booster() if type(final).__module__.startswith("xgboost") else None
    names = booster.feature_names if booster is not None else None
    if booster is not None:
        booster.feature_names = None
    try:
        yield
    finally:
        if booster is not None:
            booster.feature_names = names


@functools.cache
def _register_boosters() -> None:
    """onnxmltools' XGBoost and LightGBM converters as skl2onnx converters (for those installed), writing FLOAT
    outputs whatever the input type, and XGBoost fed float32 as XGBoost feeds itself."""
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes, calculate_linear_regressor_output_shapes

    classify = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    if importlib.util.find_spec("xgboost"):
        import xgboost
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost

        for cls, shapes in ((xgboost.XGBClassifier, calculate_linear_classifier_output_shapes), (xgboost.XGBRegressor, calculate_linear_regressor_output_shapes)):
            options = classify if shapes is calculate_linear_classifier_output_shapes else None
            update_registered_converter(cls, f"predictsql{cls.__name__}", _float_outputs(shapes), _float_input(convert_xgboost), options=options)
    if importlib.util.find_spec("lightgbm"):
        import lightgbm
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm

        for cls, shapes in ((lightgbm.LGBMClassifier, calculate_linear_classifier_output_shapes), (lightgbm.LGBMRegressor, calculate_linear_regressor_output_shapes)):
            options = classify if shapes is calculate_linear_classifier_output_shapes else {"split": None}
            update_registered_converter(cls, f"predictsql{cls.__name__}", _float_outputs(shapes), _double_thresholds(convert_lightgbm), options=options)


def _float_outputs(shapes: Callable[[Any], None]) -> Callable[[Any], None]:
    """skl2onnx's shape calculator, with the FLOAT outputs ai.onnx.ml 3's tree ensembles write for any input."""
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    def calculate(operator: Any) -> None:
        shapes(operator)
        for variable in operator.outputs:
            if isinstance(variable.type, DoubleTensorType):
                variable.type = FloatTensorType(variable.type.shape)

    return calculate


def _float_input(convert: Callable[[Any, Any, Any], None]) -> Callable[[Any, Any, Any], None]:
    """A converter fed a Cast of its DOUBLE input to FLOAT: XGBoost rounds float64 data to float32 before splitting."""
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    def converter(scope: Any, operator: Any, container: Any) -> None:
        source = operator.inputs[0]
        if not isinstance(source.type, DoubleTensorType):
            convert(scope, operator, container)
            return
        cast = scope.declare_local_variable("float_input", FloatTensorType(source.type.shape))
        container.add_node("Cast", [source.full_name], [cast.full_name], to=onnx.TensorProto.FLOAT, name=scope.get_unique_operator_name("Cast"))
        operator.inputs.set_element(0, cast)
        try:
            convert(scope, operator, container)
        finally:
            operator.inputs.set_element(0, source)

    return converter


def _double_thresholds(convert: Callable[[Any, Any, Any], None]) -> Callable[[Any, Any, Any], None]:
    """A converter whose tree ensembles keep their thresholds as doubles when fed DOUBLE (ai.onnx.ml 3's
    nodes_values_as_tensor): onnxmltools writes LightGBM's double thresholds as float32 attributes, which sends
    values between a threshold and its float32 rounding down the wrong branch."""
    from skl2onnx.common.data_types import DoubleTensorType

    def converter(scope: Any, operator: Any, container: Any) -> None:
        if not isinstance(operator.inputs[0].type, DoubleTensorType):
            convert(scope, operator, container)
            return
        add_node = container.add_node

        def add(op_type: str, *args: Any, **attrs: Any) -> Any:
            if op_type.startswith("TreeEnsemble") and "nodes_values" in attrs:
                attrs["nodes_values_as_tensor"] = onnx.numpy_helper.from_array(np.asarray(attrs.pop("nodes_values"), dtype=np.float64))
            return add_node(op_type, *args, **attrs)

        container.add_node = add
        try:
            convert(scope, operator, container)
        finally:
            del container.add_node

    return converter


@contextlib.contextmanager
def _hist_gradient_boosting_fixup() -> Iterator[None]:
    """skl2onnx 1.20 writes numpy bools into an ints attribute, which onnx 1.23 refuses; coerce them."""
    from skl2onnx.operator_converters import random_forest

    original = random_forest.add_tree_to_attribute_pairs_hist_gradient_boosting

    def fixed(attr_pairs: dict, *args: Any, **kwargs: Any) -> None:
        original(attr_pairs, *args, **kwargs)
        key = "nodes_missing_value_tracks_true"
        attr_pairs[key] = [int(v) for v in attr_pairs[key]]

    random_forest.add_tree_to_attribute_pairs_hist_gradient_boosting = fixed
    try:
        yield
    finally:
        random_forest.add_tree_to_attribute_pairs_hist_gradient_boosting = original
