"""scikit-learn estimators and pipelines → ONNX through skl2onnx; XGBoost and LightGBM estimators (alone or as a
pipeline's last step) through onnxmltools' converters, registered into skl2onnx.

- `zipmap=False`: class probabilities come out as one [N,C] float tensor.
- A ColumnTransformer pipeline gets one [N,1] input per DATA column (strings stay strings); any other model one
  [N,k] input named X.
- Inputs are FLOAT, but DOUBLE for a model ending in XGBoost, LightGBM, HistGradientBoosting, MultinomialNB or
  ComplementNB: LightGBM and HGB split on double thresholds (in FLOAT, HGB regressors were 8.2 off on unseen rows),
  the two naive Bayes sum large counts' log probabilities (1.4e-4 off in FLOAT), and preprocessing in front of
  XGBoost must run in double before XGBoost's own float32 cast, as it does in Python; in float32 a scaler's
  rounding moves values across XGBoost's split points (measured: 0.27 off in probability). scikit-learn's own trees
  after preprocessing likewise (a FLOAT scaler + RandomForest was 0.05 off), falling back to FLOAT where skl2onnx
  cannot write the transformers in DOUBLE.
- A BOOLEAN sample column is an INT64 input (False 0, True 1): a one-hot encoder's categories then are the
  0 and 1 that a BOOLEAN DATA column casts to, where as strings they were 'False'/'True', which no SQL cast writes.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import onnx

from predictsql.engine import onnx_edit
from predictsql.engine.errors import ExportError
from predictsql.engine.export import Columns, Converted, column_names, listed

MATRIX_INPUT = "X"
_OPSET = {"": 18, "ai.onnx.ml": 3}  # skl2onnx writes ai.onnx.ml 3 at most; onnxmltools would write 5
_BOOSTERS = ("xgboost", "lightgbm")
_ONE_DECISION = ("LinearSVC", "RidgeClassifier", "RidgeClassifierCV")  # binary: skl2onnx writes decision_function as [N,1]
_REVERSED_DECISION = ("SVC", "NuSVC")  # binary: skl2onnx writes [d, -d]
_DOUBLE_MODELS = ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor", "MultinomialNB", "ComplementNB")
# scikit-learn's trees split float32 values: fed DOUBLE, their converters first Cast to FLOAT (_float_input)
_FLOAT32_TREES = tuple(f"{kind}{task}" for kind in ("DecisionTree", "ExtraTree", "ExtraTrees", "RandomForest", "GradientBoosting") for task in ("Classifier", "Regressor"))


def convert(estimator: Any, sample: Any, columns: Columns, _library: str) -> Converted:
    """`estimator` converted with its DATA columns and class labels (see export.export)."""
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    estimator = _without_passthrough(estimator)
    _check_fitted(estimator)
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    if type(final).__name__.startswith("KNeighbors") and getattr(final, "weights", "uniform") != "uniform":
        # measured on held-out rows: a classifier's probability 0.088 off, a regressor 12% off
        raise ExportError(f"skl2onnx's {type(final).__name__} with weights={final.weights!r} does not compute what scikit-learn does: use weights='uniform'")
    booster = type(final).__module__.split(".")[0] in _BOOSTERS
    tree_pipeline = final is not estimator and _holds_float32_trees(final)
    double = booster or type(final).__name__ in _DOUBLE_MODELS or tree_pipeline
    options = _options(final)
    if any(type(part).__module__.split(".")[0] in _BOOSTERS for part in _parts(final)):
        _register_boosters()  # a booster inside a voting or stacking ensemble too (it failed until one had ended a model)
    if type(final).__name__.startswith("HistGradientBoosting"):
        _register_hist_gradient_boosting()
    _register_double_imputer()
    if tree_pipeline:
        _register_float32_trees()
    # a tree pipeline whose transformers skl2onnx cannot write in DOUBLE falls back to FLOAT, as before (rounding may move a split)
    attempts = (DoubleTensorType, FloatTensorType) if tree_pipeline else (DoubleTensorType if double else FloatTensorType,)
    for number in attempts:
        initial, names = _initial_types(estimator, sample, columns, number)
        try:
            model = _to_onnx(estimator, final, initial, options)
            if number is not attempts[-1]:
                onnx.checker.check_model(model, full_check=True)  # skl2onnx mixes FLOAT and DOUBLE in some transformers
            break
        except (ExportError, onnx.checker.ValidationError, onnx.shape_inference.InferenceError):
            if number is attempts[-1]:
                raise
    if hasattr(final, "decision_function") and not hasattr(final, "predict_proba") and hasattr(final, "classes_"):
        _decision_scores(model, final)
    return Converted(model, _input_columns(model, initial, names), getattr(final, "classes_", None))


def _options(final: Any) -> dict | None:
    """skl2onnx's options for the final step: a classifier's outputs as tensors (zipmap=False) where its converter
    takes the option; an empty entry else, which also keeps skl2onnx's pipeline parser from giving a LinearSVC the
    zipmap option its converter refuses (a pipeline ending in one failed to convert)."""
    if not hasattr(final, "classes_"):
        return None
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from skl2onnx.common._registration import get_converter

    alias = sklearn_operator_name_map.get(type(final))
    allowed = getattr(get_converter(alias), "get_allowed_options", lambda: None)() if alias else None
    return {id(final): {"zipmap": False} if allowed is None or "zipmap" in allowed else {}}


def _decision_scores(model: onnx.ModelProto, final: Any) -> None:
    """A classifier without probabilities (SVC without probability=True, Perceptron, hinge SGD, LinearSVC, Ridge):
    skl2onnx writes its decision_function as 'probabilities'. Named `scores`, a binary one as [-d, d], like a binary
    classifier's two probabilities, so scores_1 is scikit-learn's decision_function: skl2onnx writes [d] alone for
    LinearSVC and RidgeClassifier (declaring [N,2] for the latter, which then failed to score) and [-d, d] reversed
    for SVC and NuSVC."""
    graph = model.graph
    output = next((o for o in graph.output if o.name == "probabilities"), None)
    if output is None:
        return
    pair = len(final.classes_) == 2 and type(final).__name__ in _ONE_DECISION + _REVERSED_DECISION
    made = "predictsql_decision" if pair else "scores"
    onnx_edit.rename_outputs(model, {output.name: made})
    if not pair:
        return
    if type(final).__name__ in _REVERSED_DECISION:
        order = onnx.numpy_helper.from_array(np.array([1, 0], dtype=np.int64), "predictsql_decision_order")
        graph.initializer.append(order)
        graph.node.append(onnx.helper.make_node("Gather", [made, order.name], ["scores"], axis=1, name="predictsql_decision_order"))
    else:
        graph.node.append(onnx.helper.make_node("Neg", [made], ["predictsql_decision_negated"], name="predictsql_decision_negated"))
        graph.node.append(onnx.helper.make_node("Concat", ["predictsql_decision_negated", made], ["scores"], axis=1, name="predictsql_decision_pair"))
    output.CopyFrom(onnx.helper.make_tensor_value_info("scores", output.type.tensor_type.elem_type, [None, 2]))


def _initial_types(estimator: Any, sample: Any, columns: Columns, number: type) -> tuple[list[tuple[str, Any]], list[str] | None]:
    """skl2onnx's initial types (numbers as `number`), and the [N,k] input's DATA columns (None: one input per column)."""
    from skl2onnx.common.data_types import Int64TensorType, StringTensorType

    if _has_column_transformer(estimator):
        if sample is None:
            raise ExportError(f"{type(estimator).__name__} starts with a ColumnTransformer, which reads columns by name and type: pass sample=<a DataFrame of them>")
        return [(str(n), _column_type(t, number, Int64TensorType, StringTensorType)) for n, t in sample.dtypes.items()], None
    names = column_names(_fitted_names(estimator), sample, listed(columns), type(estimator).__name__, getattr(estimator, "n_features_in_", None))
    return [(MATRIX_INPUT, number([None, len(names)]))], names


def _to_onnx(estimator: Any, final: Any, initial: list[tuple[str, Any]], options: dict | None) -> onnx.ModelProto:
    """skl2onnx's conversion, its failures as ExportErrors."""
    from skl2onnx import to_onnx

    with _tree_fixups(), _booster_names_cleared(final), _binary_lda_halved(final), warnings.catch_warnings():
        # skl2onnx reads an SVC's probA_ / probB_ whether or not it has probabilities; scikit-learn 1.9 deprecates them
        warnings.filterwarnings("ignore", r"Attribute `prob[AB]_` was deprecated", FutureWarning)
        try:
            return to_onnx(estimator, initial_types=initial, options=options, target_opset=_OPSET)
        except (ImportError, ExportError):
            raise
        except Exception as e:  # skl2onnx and onnxmltools say "unsupported" with many exception types of their own
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            fix = "export the parts it supports, or convert it yourself and pass the ONNX to export"
            raise ExportError(f"skl2onnx cannot convert {type(estimator).__name__} ({type(e).__name__}: {reason}); {fix}") from e


def _without_passthrough(estimator: Any) -> Any:
    """A pipeline whose last step is 'passthrough' (or None) as the pipeline before it, which skl2onnx can convert."""
    while hasattr(estimator, "steps") and len(estimator.steps) > 1 and estimator.steps[-1][1] in ("passthrough", None):
        estimator = estimator[:-1]
    return estimator


def _check_fitted(estimator: Any) -> None:
    """An ExportError for an unfitted model, before a converter fails on a missing attribute."""
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(estimator)
    except NotFittedError as e:
        raise ExportError(f"{type(estimator).__name__} is not fitted: call fit(X, y) on it before export") from e
    except TypeError as e:  # not an estimator at all
        raise ExportError(f"export takes a fitted estimator or pipeline; {type(estimator).__name__} is neither ({e})") from e


def _column_type(dtype: Any, number: type, integer: type, string: type) -> Any:
    """The per-column input a ColumnTransformer's DATA column gets (see the module docstring on BOOLEAN)."""
    dtype = getattr(dtype, "numpy_dtype", dtype)  # pandas' nullable and pyarrow-backed dtypes (Float64, boolean, double[pyarrow])
    if isinstance(dtype, np.dtype) and dtype == np.bool_:
        return integer([None, 1])
    return number([None, 1]) if _numeric(dtype) else string([None, 1])


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
    """Whether the model's first step (inside nested pipelines too) is a ColumnTransformer."""
    from sklearn.compose import ColumnTransformer

    while hasattr(estimator, "steps"):
        estimator = estimator.steps[0][1]
    return isinstance(estimator, ColumnTransformer)


def _numeric(dtype: Any) -> bool:
    return isinstance(dtype, np.dtype) and np.issubdtype(dtype, np.number)


@contextlib.contextmanager
def _booster_names_cleared(final: Any) -> Iterator[None]:
    """onnxmltools' XGBoost converter wants features named f0, f1, …: hide every fitted booster's real names while it
    runs (one inside voting, stacking or calibration too, which failed to convert)."""
    boosters = [part.get_booster() for part in _fitted_parts(final) if type(part).__module__.startswith("xgboost")]
    names = [booster.feature_names for booster in boosters]
    for booster in boosters:
        booster.feature_names = None
    try:
        yield
    finally:
        for booster, kept in zip(boosters, names, strict=True):
            booster.feature_names = kept


def _fitted_parts(estimator: Any) -> list[Any]:
    """The estimator and the fitted estimators it holds, however deep: a pipeline's steps, the fitted attributes
    (estimators_, final_estimator_, calibrated_classifiers_, …) and a calibrated classifier's estimator; get_params
    would name the unfitted originals instead."""
    found: list[Any] = []
    pending = [estimator]
    while pending:
        part = pending.pop()
        if isinstance(part, (list, tuple)):
            pending.extend(v for v in part if _holds_estimators(v))  # ("name", estimator) pairs
            continue
        found.append(part)
        fitted_estimator = hasattr(part, "calibrators")  # elsewhere `estimator` is the unfitted parameter
        held = [v for k, v in vars(part).items() if k == "steps" or (k == "estimator" and fitted_estimator) or (k.endswith("_") and not k.startswith("_"))]
        pending.extend(v for v in held if _holds_estimators(v))
    return found


def _holds_estimators(value: Any) -> bool:
    """An estimator, calibration's per-fold _CalibratedClassifier, or a list of them."""
    return isinstance(value, (list, tuple)) or hasattr(value, "fit") or hasattr(value, "calibrators")


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
            update_registered_converter(cls, f"predictsql{cls.__name__}", _float_outputs(shapes), _float_input(_softmax_probabilities(convert_xgboost)), options=options)
    if importlib.util.find_spec("lightgbm"):
        import lightgbm
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm

        for cls, shapes in ((lightgbm.LGBMClassifier, calculate_linear_classifier_output_shapes), (lightgbm.LGBMRegressor, calculate_linear_regressor_output_shapes)):
            options = classify if shapes is calculate_linear_classifier_output_shapes else {"split": None}
            update_registered_converter(cls, f"predictsql{cls.__name__}", _float_outputs(shapes), _double_thresholds(convert_lightgbm), options=options)


def _holds_float32_trees(estimator: Any) -> bool:
    """Whether scikit-learn trees split the estimator's input: it is one, or holds one (calibration, voting, stacking,
    bagging of trees)."""
    return any(type(p).__name__ in _FLOAT32_TREES for p in _parts(estimator))


def _parts(estimator: Any) -> list[Any]:
    """The estimator and every estimator its parameters hold, however deep."""
    return [estimator, *(estimator.get_params(deep=True).values() if hasattr(estimator, "get_params") else ())]


@functools.cache
def _register_float32_trees() -> None:
    """skl2onnx's tree converters, fed a Cast to FLOAT of a DOUBLE input, as scikit-learn casts what its pipeline's
    preprocessing computed in float64: preprocessing in float32 lands on a neighbouring float32 of a value the tree split
    between (a scaler + RandomForest was 0.05 off in probability on 1 row in 228 held out)."""
    from skl2onnx import update_registered_converter
    from skl2onnx.common._registration import get_converter, get_shape_calculator
    from sklearn import ensemble, tree

    for name in _FLOAT32_TREES:
        cls = getattr(tree, name, None) or getattr(ensemble, name)
        alias = f"Sklearn{name}"
        converter = get_converter(alias)
        options = converter.get_allowed_options() if hasattr(converter, "get_allowed_options") else None
        update_registered_converter(cls, alias, _float_outputs(get_shape_calculator(alias)), _float_input(converter), options=options)


@functools.cache
def _register_hist_gradient_boosting() -> None:
    """skl2onnx's HistGradientBoosting converters, on DOUBLE inputs keeping the thresholds as doubles and declaring
    the FLOAT outputs ai.onnx.ml 3's tree ensembles write (skl2onnx rounds the thresholds and declares DOUBLE)."""
    from skl2onnx import update_registered_converter
    from skl2onnx.common._registration import get_converter, get_shape_calculator
    from skl2onnx.operator_converters.random_forest import convert_sklearn_random_forest_classifier, convert_sklearn_random_forest_regressor_converter
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    for cls, function in ((HistGradientBoostingClassifier, convert_sklearn_random_forest_classifier), (HistGradientBoostingRegressor, convert_sklearn_random_forest_regressor_converter)):
        alias = f"Sklearn{cls.__name__}"
        convert = functools.partial(function, op_version=3)  # at its default, 1, the classifier rounds its thresholds to float32 first
        options = get_converter(alias).get_allowed_options()
        update_registered_converter(cls, alias, _float_outputs(get_shape_calculator(alias)), _double_thresholds(convert), options=options)


@functools.cache
def _register_double_imputer() -> None:
    """SimpleImputer on DOUBLE inputs as IsNaN (or Equal) and Where: skl2onnx writes an Imputer node, which
    onnxruntime implements for FLOAT only, with its fill values rounded to float32."""
    from skl2onnx import update_registered_converter
    from skl2onnx.common.data_types import DoubleTensorType
    from skl2onnx.operator_converters.imputer_op import convert_sklearn_imputer
    from skl2onnx.shape_calculators.imputer import calculate_sklearn_imputer_output_shapes
    from sklearn.impute import SimpleImputer

    def converter(scope: Any, operator: Any, container: Any) -> None:
        imputer = operator.raw_operator
        if not isinstance(operator.inputs[0].type, DoubleTensorType) or len(operator.inputs) != 1 or imputer.add_indicator:
            convert_sklearn_imputer(scope, operator, container)
            return
        source, missing = operator.inputs[0].full_name, imputer.missing_values
        mask = scope.get_unique_variable_name("missing")
        if isinstance(missing, float) and np.isnan(missing):
            container.add_node("IsNaN", [source], [mask], name=scope.get_unique_operator_name("IsNaN"))
        else:
            value = scope.get_unique_variable_name("missing_value")
            container.add_initializer(value, onnx.TensorProto.DOUBLE, [], [float(missing)])
            container.add_node("Equal", [source, value], [mask], name=scope.get_unique_operator_name("Equal"))
        fill = scope.get_unique_variable_name("fill")
        container.add_initializer(fill, onnx.TensorProto.DOUBLE, [len(imputer.statistics_)], imputer.statistics_.astype(np.float64).tolist())
        container.add_node("Where", [mask, fill, source], [operator.outputs[0].full_name], name=scope.get_unique_operator_name("Where"))

    update_registered_converter(SimpleImputer, "SklearnSimpleImputer", calculate_sklearn_imputer_output_shapes, converter)


@contextlib.contextmanager
def _binary_lda_halved(final: Any) -> Iterator[None]:
    """A binary LinearDiscriminantAnalysis with its coefficients halved while skl2onnx converts it: skl2onnx writes
    softmax([-d, d]) = sigmoid(2d), where scikit-learn's probability is sigmoid(d); labels are unchanged."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    if not isinstance(final, LinearDiscriminantAnalysis) or len(final.classes_) != 2:
        yield
        return
    coef, intercept = final.coef_, final.intercept_
    final.coef_, final.intercept_ = coef / 2, intercept / 2
    try:
        yield
    finally:
        final.coef_, final.intercept_ = coef, intercept


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

    def edit(op_type: str, attrs: dict[str, Any]) -> None:
        if op_type.startswith("TreeEnsemble") and "nodes_values" in attrs:
            attrs["nodes_values_as_tensor"] = onnx.numpy_helper.from_array(np.asarray(attrs.pop("nodes_values"), dtype=np.float64))
            attrs["op_version"] = 3  # the _as_tensor attributes are ai.onnx.ml 3's; skl2onnx asks for 1

    def converter(scope: Any, operator: Any, container: Any) -> None:
        with _added_nodes_edited(container, edit if isinstance(operator.inputs[0].type, DoubleTensorType) else None):
            convert(scope, operator, container)

    return converter


def _softmax_probabilities(convert: Callable[[Any, Any, Any], None]) -> Callable[[Any, Any, Any], None]:
    """XGBoost's multi:softmax with the softmax its predict_proba applies to the margins: onnxmltools writes the
    margins themselves as the probabilities (1.88 where XGBoost gives 0.95); labels are the same either way."""

    def edit(op_type: str, attrs: dict[str, Any]) -> None:
        if op_type == "TreeEnsembleClassifier":
            attrs["post_transform"] = "SOFTMAX"

    def converter(scope: Any, operator: Any, container: Any) -> None:
        with _added_nodes_edited(container, edit if getattr(operator.raw_operator, "objective", None) == "multi:softmax" else None):
            convert(scope, operator, container)

    return converter


@contextlib.contextmanager
def _added_nodes_edited(container: Any, edit: Callable[[str, dict[str, Any]], None] | None) -> Iterator[None]:
    """The converter's container with edit(op_type, attributes) applied to each node it adds (none: as it is)."""
    if edit is None:
        yield
        return
    add_node = container.add_node

    def add(op_type: str, *args: Any, **attrs: Any) -> Any:
        edit(op_type, attrs)
        return add_node(op_type, *args, **attrs)

    container.add_node = add
    try:
        yield
    finally:
        del container.add_node


@contextlib.contextmanager
def _tree_fixups() -> Iterator[None]:
    """skl2onnx's tree attributes as scikit-learn scores them: a NaN takes each split's missing_go_to_left (the side
    NaN took in fitting, else the child with more samples), which skl2onnx 1.20 drops, sending it down the false side;
    and HistGradientBoosting's numpy bools, which onnx 1.23 refuses in an ints attribute, as ints."""
    from skl2onnx.operator_converters import decision_tree, gradient_boosting, isolation_forest, random_forest

    key = "nodes_missing_value_tracks_true"
    original = random_forest.add_tree_to_attribute_pairs
    original_hist = random_forest.add_tree_to_attribute_pairs_hist_gradient_boosting

    def tree(attr_pairs: dict, is_classifier: bool, tree: Any, *args: Any, **kwargs: Any) -> None:
        original(attr_pairs, is_classifier, tree, *args, **kwargs)
        attr_pairs[key][len(attr_pairs[key]) - tree.node_count :] = [int(v) for v in tree.missing_go_to_left]

    def hist(attr_pairs: dict, *args: Any, **kwargs: Any) -> None:
        original_hist(attr_pairs, *args, **kwargs)
        attr_pairs[key] = [int(v) for v in attr_pairs[key]]

    modules = (decision_tree, gradient_boosting, isolation_forest, random_forest)
    for module in modules:
        module.add_tree_to_attribute_pairs = tree
    random_forest.add_tree_to_attribute_pairs_hist_gradient_boosting = hist
    try:
        yield
    finally:
        for module in modules:
            module.add_tree_to_attribute_pairs = original
        random_forest.add_tree_to_attribute_pairs_hist_gradient_boosting = original_hist
