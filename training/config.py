"""The training config: one YAML file, one section per stage, checked whole before anything runs."""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from reranker.core import PromptSpec
from reranker.errors import LrefError

# Stages in the order `lref train` runs them.
STAGES = ("data", "select", "cot", "sft", "dpo_debias", "dpo_passn", "grpo", "eval", "export")
LABEL_LOSSES = ("token", "labels", "rating")
TRAINED = ("sft", "dpo_debias", "dpo_passn", "grpo")  # stages that write a model, in order
NOT_IN_YAML = ("base_dir", "config_file", "config_text", "settings")  # TrainConfig's bookkeeping


class ConfigError(LrefError, ValueError):
    """A config problem, reported before any training starts."""


@dataclass
class DataConfig:
    train: str = ""  # judgments file: .jsonl, .csv or .parquet
    eval: str | None = None  # a separate eval file; otherwise eval_fraction of the queries
    format: str = "auto"  # auto | jsonl | csv | esci
    columns: dict[str, str] = field(default_factory=dict)  # our name -> the file's column name
    grade_field: str = "level"  # the column holding the raw grade
    grade_map: dict[str, str] = field(default_factory=dict)  # raw grade -> level name/token; empty = as is
    # a finer human grade (e.g. the mean of several raters), kept for eval's Spearman; else the level's grade
    rating_field: str | None = None
    eval_fraction: float = 0.1
    max_train: int | None = None  # subsample (by query, seeded) to what the machine can train
    max_eval: int | None = None


@dataclass
class SelectConfig:
    enabled: bool = True
    helper: str = "linear"  # cheap helper models: hashed lexical features + logistic regression
    im_fraction: float = 0.3  # IM: trained on a random sample of this size
    ci_per_bucket: int = 2000  # CI: at most this many rows from each of head/torso/tail queries
    ms_folds: int = 3  # MS: out-of-fold confusions define the simulated mislabels
    teacher_labels: str | None = None  # JSONL of teacher labels; with it MS predicts the teacher's disagreements
    min_keep: int = 1


@dataclass
class TeacherConfig:
    base_url: str = ""  # any OpenAI-compatible endpoint, e.g. http://127.0.0.1:8001/v1
    model: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 60.0
    max_tokens: int = 96


@dataclass
class CotConfig:
    enabled: bool = True
    generator: str = "rules"  # rules | teacher
    styles: list[str] = field(default_factory=lambda: ["EE", "RA", "DR"])
    rules_file: str | None = None  # default: training/rules.md
    teacher: TeacherConfig = field(default_factory=TeacherConfig)


@dataclass
class LoraConfig:
    enabled: bool = True
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"
    # Adapt only the top N decoder layers (None: all). Backward then stops there: the frozen lower
    # layers cost a forward pass alone, which is what makes an epoch fit a CPU.
    top_layers: int | None = None


@dataclass
class SftPass:
    """A later pass of SFT: the curriculum again over a fresh class-balanced sample."""

    rows_per_class: int = 0
    learning_rate: float = 0.0
    teacher_weight: float = 0.0  # as sft.teacher_weight, for this pass
    stop_after_steps: int = 0    # as sft.stop_after_steps, for this pass


@dataclass
class SftConfig:
    epochs: float = 1.0
    learning_rate: float = 2e-4
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 512
    curriculum: list[str] = field(default_factory=lambda: ["EE", "RA", "DR"])
    # Upsample every label to the most frequent one's count within each phase (seeded), so the
    # label head does not learn the class prior alone.
    balance_classes: bool = False
    # With balance_classes: every label gets exactly this many rows (larger ones sampled down,
    # smaller ones up), which also bounds an epoch on slow hardware.
    rows_per_class: int | None = None
    save_steps: int = 200
    # auto: bf16 on a GPU or a CPU with AVX512-BF16/AMX (the LoRA weights stay fp32), else fp32
    dtype: str = "auto"
    # Any other field of TRL's SFTConfig, passed through as is (e.g. weight_decay, max_grad_norm);
    # checked against TRL's dataclass when the config loads. A field this section sets under its
    # own name (epochs -> num_train_epochs, ...) is refused here: set it there.
    trl: dict[str, Any] = field(default_factory=dict)
    group_by_length: bool = True  # batches of similar length: little padding
    # The loss at the answer position. token: cross-entropy over the whole vocabulary (plain SFT).
    # labels: over the scheme's label tokens only, the distribution serving scores. rating: as
    # labels, toward a soft target from the raters' mean (data.rating_field), so rows rated 2.33
    # and 2.67 share a level but not a target: p(level) ~ exp(-(rating - centre)^2 / 2 sigma^2),
    # a level's centre being the mean rating of its training rows.
    label_loss: str = "token"
    rating_sigma: float = 0.3
    # Passes after the first, each a resumable phase with its own warm-up and cosine decay, that
    # continues the adapter on `rows_per_class` rows per label, taking the rows earlier passes left
    # out first: more of the data seen without retraining the first pass.
    more_passes: list[SftPass] = field(default_factory=list)
    # Compile the decoder layers (torch.compile, dynamic shapes): on a 2-core AMX CPU its fused
    # elementwise kernels make LoRA SFT 1.65x faster (docs/benchmarks.md). auto: where a probe compile works (a CPU
    # needs a C++ compiler); true: fail if it does not; false: eager.
    compile: bool | str = "auto"
    # Up to this many rows of one query share one sequence: the query's prefix once, then each
    # product and its answer, attending to the prefix and itself only (serving's shared-prefix
    # attention), positions as if alone. Fewer tokens per row; batch_size then counts sequences.
    query_pack: int = 1
    # Distillation. teacher: "lexical" (the lexical model of training/lexical.py, fit by the sft
    # stage out of fold on the train rows, IDF from teacher_catalog's titles if given) or a JSONL of
    # {query, product_id, probs} (the scheme's order, best first). With label_loss labels/rating, a
    # row's target becomes (1 - w) x its own + w x the teacher's, w being teacher_weight for the
    # first pass and each more_passes entry's own for the later ones.
    teacher: str | None = None
    teacher_catalog: str | None = None  # a JSONL of products with a "title" each
    teacher_weight: float = 0.0
    # End the first pass after this many optimizer steps (0: the whole pass), its learning-rate
    # schedule still planned for the whole pass: what LREF_SFT_DEADLINE does to a budgeted run, so a
    # recipe can replay a judge a deadline stopped. more_passes entries have their own.
    stop_after_steps: int = 0


@dataclass
class PolicyStageConfig:
    """What the preference/RL stages share: LoRA on the previous model, sampled rows, sampling."""

    enabled: bool = True
    max_rows: int | None = 2000  # training rows scored / sampled
    epochs: float = 1.0
    learning_rate: float = 5e-5
    save_steps: int = 200
    dtype: str = "auto"  # as sft.dtype
    trl: dict[str, Any] = field(default_factory=dict)  # as sft.trl, for TRL's DPOConfig / GRPOConfig
    temperature: float = 1.0
    max_new_tokens: int = 48
    sample_batch: int = 16  # prompts per generate() call when sampling answers


@dataclass
class DpoConfig(PolicyStageConfig):
    beta: float = 0.1
    batch_size: int = 8
    max_length: int = 512
    n: int = 4  # dpo_passn: samples per row


@dataclass
class GrpoConfig(PolicyStageConfig):
    max_rows: int | None = 1000
    learning_rate: float = 1e-5
    max_new_tokens: int = 16
    num_generations: int = 4  # rollouts per prompt, for dynamic sampling and for GRPO's groups
    gamma: int | None = None  # keep a prompt if 0 < #correct < gamma (default: num_generations)
    max_prompts: int | None = 400
    prompts_per_step: int = 2


@dataclass
class EvalConfig:
    betas: list[float] = field(default_factory=lambda: [round(0.1 * i, 1) for i in range(1, 10)])
    # bad_f1: the β kept for serving maximises the Bad tier's F1 on eval; relevant_loss: it drops the
    # most Bad rows among the βs that drop at most max_relevant_loss of the Good-tier (relevant) rows
    pick_beta_by: str = "bad_f1"
    max_relevant_loss: float = 0.02
    each_stage: bool = False  # also judge the base model and every trained stage's model (ablations)
    # A judge trained on class-balanced rows over-calls the rare labels. Its probabilities are
    # weighted by (the train rows' label prior / uniform) ** e, with e from this list that gives the
    # best macro-F1 on eval (0 = no change, 1 = Bayes' correction to the data's prior); the weights
    # go into the card's tier policy. Unbalanced SFT learns the prior itself and gets none.
    prior_exponents: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    # float32: exact (serving in fp32 reproduces eval's probabilities); auto: the dtype serving picks here
    dtype: str = "float32"


@dataclass
class ExportConfig:
    judge_dir: str | None = None  # where the judge dir goes; default run_dir/export/judge
    name: str = ""  # the judge's name in its card; default the judge dir's name
    notes: str = ""  # for the card's README: where the data comes from, under which terms


@dataclass
class TrainConfig:
    run_dir: str = "runs/default"
    model: str = "default"  # base model: 'default', a local dir, a .gguf file or a hub id
    scheme: str = "four_level"
    seed: int = 0
    device: str = "auto"
    prompt: PromptSpec = field(default_factory=PromptSpec)  # what the judge card hands to serving
    lora: LoraConfig = field(default_factory=LoraConfig)  # the adapter every trained stage trains
    data: DataConfig = field(default_factory=DataConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    cot: CotConfig = field(default_factory=CotConfig)
    sft: SftConfig = field(default_factory=SftConfig)
    dpo_debias: DpoConfig = field(default_factory=DpoConfig)
    dpo_passn: DpoConfig = field(default_factory=DpoConfig)
    grpo: GrpoConfig = field(default_factory=GrpoConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    base_dir: Path = field(default=Path("."), repr=False)  # relative paths resolve against the YAML's dir
    config_file: str = field(default="", repr=False)  # as given to `lref train --config`: the judge card's command
    config_text: str = field(default="", repr=False)
    settings: list[str] = field(default_factory=list, repr=False)  # `lref train --set key=value`, as given

    def path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)

    @property
    def out(self) -> Path:
        return self.path(self.run_dir)


def _conforms(value: Any, hint: Any) -> bool:
    """Whether a YAML value fits a field's annotation (the few shapes these configs use)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin in (list, tuple):  # YAML has lists only: a list stands for a tuple field too
        return isinstance(value, list) and all(_conforms(v, args[0]) for v in value)
    if origin is dict:  # YAML reads `5: Perfect` with an int key: scalars stand for text here
        scalar = lambda x: isinstance(x, (str, int, float)) and not isinstance(x, bool)  # noqa: E731
        if args and args[1] is Any:  # a pass-through mapping (stage.trl): its values are checked where they go
            return isinstance(value, dict) and all(isinstance(k, str) for k in value)
        return isinstance(value, dict) and all(scalar(k) and scalar(v) for k, v in value.items())
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin in (list, tuple):
        return f"a list, each {_describe(args[0])}"
    if origin is dict:
        return "a mapping of text to values" if args and args[1] is Any else "a mapping of text to text"
    names = {bool: "true/false", int: "a whole number", float: "a number", str: "text", type(None): "null"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _build(cls, raw: Any, where: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    known = {f.name: f for f in fields(cls) if f.name not in NOT_IN_YAML}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(str, unknown))} (known: {', '.join(sorted(known))})")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in raw.items():
        default = known[name].default_factory() if callable(known[name].default_factory) else known[name].default
        if is_dataclass(default):
            values[name] = _build(type(default), value, f"{where}.{name}")
            continue
        item = (typing.get_args(hints[name]) or [None])[0]
        if typing.get_origin(hints[name]) is list and is_dataclass(item):
            if not isinstance(value, list):
                raise ConfigError(f"{where}.{name}: expected a list of mappings, got {type(value).__name__}")
            values[name] = [_build(item, v, f"{where}.{name}[{i}]") for i, v in enumerate(value)]
            continue
        if not _conforms(value, hints[name]):
            shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
            raise ConfigError(f"{where}.{name}: expected {_describe(hints[name])}, got {shown}")
        if hints[name] is float:
            value = float(value)
        elif typing.get_origin(hints[name]) is dict and typing.get_args(hints[name])[1] is not Any:
            value = {str(k): str(v) for k, v in value.items()}
        values[name] = value
    return cls(**values)


def validate(config: TrainConfig) -> TrainConfig:
    from reranker.core import SchemeError, load_scheme
    from reranker.models.loading import ModelLoadError, check_model_spec, pick_device

    for key, check in (("model", lambda: check_model_spec(config.model)), ("device", lambda: pick_device(config.device))):
        try:
            check()
        except ModelLoadError as exc:
            raise ConfigError(f"{key}: {exc}") from exc

    try:
        scheme = load_scheme(config.scheme)
    except (SchemeError, OSError) as exc:
        raise ConfigError(f"scheme: {exc}") from exc
    if not config.data.train:
        raise ConfigError("data.train: a judgments file is required")
    for name in ("train", "eval"):
        value = getattr(config.data, name)
        if value and not config.path(value).is_file():
            raise ConfigError(f"data.{name}: file not found: {config.path(value)}")
    if config.data.format not in ("auto", "jsonl", "csv", "esci"):
        raise ConfigError(f"data.format must be auto, jsonl, csv or esci, got {config.data.format!r}")
    for raw, target in config.data.grade_map.items():
        try:
            scheme.level(str(target))
        except SchemeError as exc:
            raise ConfigError(f"data.grade_map: {raw!r} -> {target!r}: {exc}") from exc
    for name in ("max_train", "max_eval"):
        if getattr(config.data, name) is not None and getattr(config.data, name) < 1:
            raise ConfigError(f"data.{name} must be a positive whole number (rows), got {getattr(config.data, name)}")
    if not 0.0 < config.data.eval_fraction < 1.0:
        raise ConfigError("data.eval_fraction must be between 0 and 1")
    bad_styles = sorted(set(config.cot.styles) - {"EE", "RA", "DR"})
    if bad_styles or set(config.sft.curriculum) - {"EE", "RA", "DR"}:
        raise ConfigError(f"cot.styles / sft.curriculum take EE, RA, DR; got {bad_styles or config.sft.curriculum}")
    if config.cot.generator not in ("rules", "teacher"):
        raise ConfigError(f"cot.generator must be rules or teacher, got {config.cot.generator!r}")
    if config.cot.enabled and config.cot.generator == "teacher" and not (config.cot.teacher.base_url and config.cot.teacher.model):
        raise ConfigError("cot.teacher: base_url and model are required when cot.generator is teacher")
    if config.cot.rules_file and not config.path(config.cot.rules_file).is_file():
        raise ConfigError(f"cot.rules_file: file not found: {config.path(config.cot.rules_file)}")
    if config.select.teacher_labels and not config.path(config.select.teacher_labels).is_file():
        raise ConfigError(f"select.teacher_labels: file not found: {config.path(config.select.teacher_labels)}")
    if config.grpo.num_generations < 2 or config.dpo_passn.n < 2:
        raise ConfigError("grpo.num_generations and dpo_passn.n must be at least 2")
    if not all(0.0 < b <= 1.0 for b in config.eval.betas):
        raise ConfigError("eval.betas must lie in (0, 1]")
    if not config.eval.prior_exponents or not all(0.0 <= e <= 2.0 for e in config.eval.prior_exponents):
        raise ConfigError("eval.prior_exponents must be a non-empty list of numbers from 0 to 2")
    for name in ("sft", "dpo_debias", "dpo_passn", "grpo", "eval"):
        value = getattr(config, name).dtype
        if value not in ("auto", "float32", "bfloat16"):
            raise ConfigError(f"{name}.dtype must be auto, float32 or bfloat16, got {value!r}")
    from .trl_fields import check as check_trl_fields

    for name in TRAINED:
        check_trl_fields(name, getattr(config, name).trl)
    if config.eval.pick_beta_by not in ("bad_f1", "relevant_loss"):
        raise ConfigError(f"eval.pick_beta_by must be bad_f1 or relevant_loss, got {config.eval.pick_beta_by!r}")
    if not 0 <= config.eval.max_relevant_loss <= 1:  # its type is checked with every field's, in _build
        raise ConfigError("eval.max_relevant_loss must be a number from 0 to 1")
    if config.sft.label_loss not in LABEL_LOSSES:
        raise ConfigError(f"sft.label_loss must be one of {', '.join(LABEL_LOSSES)}, got {config.sft.label_loss!r}")
    if config.sft.label_loss == "rating" and not config.data.rating_field:
        raise ConfigError("sft.label_loss: rating needs data.rating_field (the column with the raters' mean)")
    if config.sft.query_pack < 1:
        raise ConfigError("sft.query_pack must be a positive whole number (1: every row alone)")
    if config.sft.compile not in (True, False, "auto"):
        raise ConfigError(f"sft.compile must be auto, true or false, got {config.sft.compile!r}")
    if not 0 < config.sft.rating_sigma < float("inf"):  # nan fails this too
        raise ConfigError("sft.rating_sigma must be a positive number")
    if config.sft.rows_per_class is not None and config.sft.rows_per_class < 1:
        raise ConfigError("sft.rows_per_class must be a positive whole number")
    for i, extra in enumerate(config.sft.more_passes):
        if extra.rows_per_class < 1 or not 0 < extra.learning_rate < float("inf"):
            raise ConfigError(f"sft.more_passes[{i}]: rows_per_class (a positive whole number) and learning_rate "
                              "(a positive number) are required")
    if any(step < 0 for step in [config.sft.stop_after_steps] + [p.stop_after_steps for p in config.sft.more_passes]):
        raise ConfigError("sft.stop_after_steps must be a whole number, 0 or more (0: the whole pass), in every pass")
    weights = [config.sft.teacher_weight] + [extra.teacher_weight for extra in config.sft.more_passes]
    if not all(0 <= w <= 1 for w in weights):
        raise ConfigError("sft.teacher_weight must be between 0 and 1 (in every pass)")
    if any(weights) and (not config.sft.teacher or config.sft.label_loss == "token"):
        raise ConfigError("sft.teacher_weight needs sft.teacher (a JSONL of teacher probabilities) and label_loss "
                          "labels or rating")
    spec = config.prompt  # its fields' types were checked in _build
    if not spec.instruction.strip():
        raise ConfigError("prompt.instruction must be 'default', 'compact' or the instruction's text")
    for name in ("max_query_tokens", "max_doc_tokens"):
        if getattr(spec, name) < 1:
            raise ConfigError(f"prompt.{name} must be a positive whole number")
    config.prompt = replace(spec, product_fields=tuple(spec.product_fields))
    return config


def load_config(path: str | Path, settings: list[str] = ()) -> TrainConfig:
    """The YAML at `path`, with `lref train --set key.path=value` settings applied over it, checked whole."""
    path = Path(path)
    try:
        text = path.read_text()
        raw = yaml.safe_load(text) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text (UTF-8) file") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    except RecursionError:
        raise ConfigError(f"{path}: YAML nested too deeply") from None
    except ValueError:  # an integer past CPython's digit limit
        raise ConfigError(f"{path}: a number with too many digits") from None
    for setting in settings:
        _apply_setting(raw, setting, path.name)
    config = _build(TrainConfig, raw, path.name)
    config.base_dir = path.resolve().parent
    config.config_file, config.config_text, config.settings = str(path), text, list(settings)
    return validate(config)


def _apply_setting(raw: Any, setting: str, where: str) -> None:
    """`--set key.path=value`: the value read as YAML (so 1e-4 is a number and [a, b] a
    list) goes into the YAML's mapping at that path, mappings made on the way; the whole config is
    then checked as if the file had said it."""
    key, sep, text = setting.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ConfigError(f"--set {setting!r}: expected key.path=value, e.g. sft.learning_rate=1e-4")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"--set {setting!r}: the value is not valid YAML") from None
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+[eE][+-]?\d+", value.strip()):
        value = float(value)  # YAML 1.1 reads 1e-4 (no dot) as text; on a command line it means the number
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    node = raw
    for i, part in enumerate(parts[:-1]):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {setting!r}: {'.'.join(parts[:i + 1])} is not a mapping")
    node[parts[-1]] = value
