"""Every params section, as typed models: the one home of each knob, its type, range and default.

``params.yaml`` has one section per stage (section = stage = module name) plus ``base``. Each section
is a pydantic model below: strict types (no ``"2"`` for ``2``, no ``1.0`` for an int), unknown keys
refused, NaN and infinities refused, ranges checked, frozen. Stages call :func:`load_params` once
and read their section; a bad file ends in one :class:`~vlclean.errors.ParamsError` line naming the
dotted key (``params key 'train.lr': input should be greater than 0, got -0.1``), values echoed at
most ~80 characters.

The file itself is read by a guarded YAML loader (:mod:`vlclean.params_yaml`): duplicate keys are refused naming the key, alias
expansion is bounded (a "billion laughs" file fails in milliseconds with a short message), and so
are nesting depth and file size.

The defaults here equal ``params.yaml`` (``tests/test_params.py`` checks it), so standalone commands
run without a params file behave like the pipeline. ``python -m vlclean.params --write-schema``
regenerates ``params.schema.json`` (editors complete and check ``params.yaml`` with it; a test fails
when it is stale).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vlclean.errors import ParamsError
from vlclean.params_yaml import MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES, MAX_SHOWN  # noqa: F401 (re-exported)
from vlclean.params_yaml import _Bad, _show, parse, parse_yaml, read_params_file  # noqa: F401 (parse_yaml re-exported)

SEED_MAX = 2**31 - 1
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Workers = Annotated[int, Field(ge=1, le=256)]
Action = Literal["keep", "drop", "relabel", "review"]
Device = Literal["auto", "cpu", "cuda"]
Loader = Literal["auto", "memory", "stream"]
FeatureSpace = Literal["embedding", "pixels"]
Classifier = Literal["auto", "knn", "logistic", "svm"]  # auto: svm on small data, else knn (vlclean.detect)
PixelsSide = Annotated[int, Field(ge=4, le=64)]
Name = Annotated[str, Field(max_length=200)]

LEAK_METHODS: tuple[str, ...] = ("exact", "perceptual", "embedding", "copy")
LEAK_SCOPES: tuple[str, ...] = ("test-train", "test-test", "train-train")
LeakMethod = Literal["exact", "perceptual", "embedding", "copy"]
LeakScope = Literal["test-train", "test-test", "train-train"]
FilterBy = Literal["prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given",
                   "low_normalized_margin", "low_self_confidence"]  # cleanlab.filter.find_label_issues


class Section(BaseModel):
    """Base of every params model: strict, closed, finite, frozen; an empty YAML section is the defaults."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False,
                              validate_default=False)

    @model_validator(mode="before")
    @classmethod
    def _empty_is_defaults(cls, data: Any) -> Any:
        return {} if data is None else data


# -- base ------------------------------------------------------------------------------------------
class BaseParams(Section):
    """The ``base`` section shared by every stage: the dataset name (output prefix) and the seed."""

    dataset: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] = "digits"
    seed: Seed = 42


# -- download --------------------------------------------------------------------------------------
Count = Annotated[int, Field(ge=0, le=30)]
SplitTarget = Literal["train", "test"] | None


class BuiltinSpec(Section):
    """How much of each planted issue the built-in dataset generates (see vlclean/datasets/builtin.py)."""

    image_size: Annotated[int, Field(ge=16, le=512)] = 32
    texture: Annotated[float, Field(ge=0.0, le=60.0)] = 25.0  # amplitude of the smooth paper texture
    drop_ambiguous: bool = True  # leave out scans that classifiers misread
    test_fraction: Annotated[float, Field(ge=0.05, le=0.5)] = 0.2
    leaks_per_transform: Count = 4
    train_duplicates: Count = 20
    mislabel_fraction: Annotated[float, Field(ge=0.0, le=0.3)] = 0.03
    dark: Count = 8
    bright: Count = 8
    blur: Count = 8
    outliers: Count = 8
    invalid: Count = 3


class FolderParams(Section):
    root: Annotated[str, Field(max_length=4096)] = ""
    no_split: SplitTarget = None  # a tree without split folders: all images in this split
    split_map: dict[Name, SplitTarget] = Field(
        default_factory=lambda: {"train": "train", "val": "test", "validation": "test", "test": "test"})


class HubParams(Section):
    repo_id: Name = "evanarlian/imagenet_1k_resized_256"
    revision: Name | None = None
    local_dir: Annotated[str, Field(max_length=4096)] | None = None
    cache_dir: Annotated[str, Field(max_length=4096)] | None = None
    image_column: Name = "image"
    label_column: Name = "label"
    split_map: dict[Name, SplitTarget] = Field(
        default_factory=lambda: {"train": "train", "val": "test", "validation": "test", "test": None})


IDX_DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")  # fmt: skip


class IdxParams(Section):
    root: Annotated[str, Field(max_length=4096)] = IDX_DEFAULT_ROOT
    class_names: Annotated[list[Name], Field(min_length=2)] = Field(default_factory=lambda: list(FASHION_MNIST_CLASSES))

    @field_validator("class_names")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"{_show(v)} must be distinct names")
        return v


class CifarParams(Section):
    path: Annotated[str, Field(max_length=4096)] = ""  # cifar-10/100-python.tar.gz or the extracted folder
    label: Literal["fine", "coarse"] = "fine"  # CIFAR-100: 100 fine classes or 20 superclasses


class DownloadParams(Section):
    source: Literal["builtin", "folder", "hf", "idx", "cifar"] = "builtin"
    shard_max_mb: Annotated[int, Field(ge=1, le=4096)] = 256
    max_pixels: Annotated[int, Field(ge=1)] = 64_000_000
    unit_size: Annotated[int, Field(ge=1)] = 10_000
    max_per_class: Annotated[int, Field(ge=1)] | None = None
    classes: list[Name] = Field(default_factory=list)
    builtin: BuiltinSpec = Field(default_factory=BuiltinSpec)
    folder: FolderParams = Field(default_factory=FolderParams)
    hf: HubParams = Field(default_factory=HubParams)
    idx: IdxParams = Field(default_factory=IdxParams)
    cifar: CifarParams = Field(default_factory=CifarParams)

    @model_validator(mode="after")
    def _root_needed(self) -> DownloadParams:
        if self.source == "folder" and not self.folder.root:
            raise _Bad("folder.root", "is required when source is 'folder'")
        if self.source == "cifar" and not self.cifar.path:
            raise _Bad("cifar.path", "is required when source is 'cifar'")
        return self


# -- analyze ---------------------------------------------------------------------------------------
Auto = Literal["auto"]  # chosen from the data by the analyzer, written to its metrics (vlclean/adapt.py)


class EmbeddingParams(Section):
    model: Literal["efficientnet_lite0", "resnet18", "resnet50", "pixels"] = "efficientnet_lite0"
    input_size: Annotated[int, Field(ge=32, le=1024)] | Auto = "auto"  # auto: from the images' shorter side, 64..224
    dtype: Literal["float16", "float32"] = "float16"
    weights_path: Annotated[str, Field(max_length=4096)] | None = None
    allow_download: bool = False


class DuplicateParams(Section):
    levels: Annotated[list[Annotated[float, Field(gt=0.0, le=1.0)]], Field(min_length=1, max_length=16)] = Field(
        default_factory=lambda: [0.94, 0.96, 0.98, 0.99])
    k: Annotated[int, Field(ge=1, le=1000)] = 20  # neighbours examined per image
    hash_distance: Annotated[int, Field(ge=0, le=64)] = 4  # pHash and dHash within this many bits (flip-aware)


class OutlierParams(Section):
    k: Annotated[int, Field(ge=1, le=1000)] = 5
    z: Annotated[float, Field(ge=0.0)] = 6.0


class MislabelParams(Section):
    classifier: Classifier = "auto"
    folds: Annotated[int, Field(ge=2, le=20)] = 5
    repeats: Annotated[int, Field(ge=1, le=10)] = 1  # cross-validation repeats (different folds) averaged
    C: Annotated[float, Field(gt=0.0)] = 3.0
    knn_k: Annotated[int, Field(ge=1, le=1000)] = 20
    filter_by: FilterBy = "prune_by_noise_rate"


class QualityParams(Section):
    """Absolute limits AND a robust z-score against the image's class (vlclean.detect.quality_flags)."""

    dark_below: Annotated[float, Field(ge=0.0, le=255.0)] = 40.0
    bright_above: Annotated[float, Field(ge=0.0, le=255.0)] = 215.0
    blur_below: Annotated[float, Field(ge=0.0)] = 25.0
    z: Annotated[float, Field(ge=0.0, le=100.0)] = 2.5
    min_class_images: Annotated[int, Field(ge=2, le=1_000_000)] = 8  # smaller classes: z against the dataset


def _default_plausible() -> dict[str, float]:
    return {"mislabel": 0.15, "outlier": 0.05, "dark": 0.1, "bright": 0.1, "blur": 0.1}


class DetectParams(Section):
    duplicates: DuplicateParams = Field(default_factory=DuplicateParams)
    outliers: OutlierParams = Field(default_factory=OutlierParams)
    mislabels: MislabelParams = Field(default_factory=MislabelParams)
    quality: QualityParams = Field(default_factory=QualityParams)
    clusters: Annotated[int, Field(ge=0, le=1_000_000)] = 0  # 0: about sqrt(N)
    # sanity guard: flagging more than this share of the valid images is reported as implausible
    plausible_share: dict[Literal["mislabel", "outlier", "dark", "bright", "blur"], Fraction] = Field(
        default_factory=_default_plausible)


class AnalyzeParams(Section):
    draft: bool = True
    # judge blur at this shorter side (None: native, <= 256; auto: the images' median shorter side, 16..256)
    blur_side: Annotated[int, Field(ge=8, le=4096)] | None | Auto = "auto"
    embedding: EmbeddingParams = Field(default_factory=EmbeddingParams)
    # what the mislabel detector's classifier sees: the CNN embedding, the network-free grey thumbnail, or
    # auto: the candidate (embedding, pixels of each side up to thumbnail_side) of best cross-validated accuracy
    label_features: FeatureSpace | Auto = "auto"
    label_pixels_side: PixelsSide | Auto = "auto"  # auto: 8 and 16 are candidates
    thumbnail_side: PixelsSide = 16  # grey thumbnails stored in data/features (pixel features of any side up to it)
    detect: DetectParams = Field(default_factory=DetectParams)


# -- detect_leaks ----------------------------------------------------------------------------------
Bits = Annotated[int, Field(ge=0, le=64)]
Cosine = Annotated[float, Field(ge=-1.0, le=1.0)]


class LeakParams(Section):
    methods: Annotated[list[LeakMethod], Field(min_length=1, max_length=4)] = Field(
        default_factory=lambda: list(LEAK_METHODS))
    phash_max: Bits = 4
    dhash_max: Bits = 6
    crop_scales: Annotated[list[Annotated[float, Field(ge=0.3, lt=1.0)]], Field(max_length=8)] = Field(
        default_factory=lambda: [0.9, 0.8])
    min_similarity: Cosine = 0.92
    confirm_phash_max: Bits = 12
    confirm_copy_min: Cosine = 0.94  # embedding pairs the copy score applies to (vlclean.copies.pair_scores)
    near_similarity: Cosine = 0.97
    copy_min_score: Cosine = 0.94  # method copy: content-thumbnail correlation and edges (vlclean.copies; photo seeds 0-9)
    k: Annotated[int, Field(ge=1, le=1000)] = 10
    index: Literal["auto", "flat", "ivf", "hnsw"] = "auto"  # faiss index for embeddings
    scopes: Annotated[list[LeakScope], Field(min_length=1, max_length=3)] = Field(
        default_factory=lambda: list(LEAK_SCOPES))

    @field_validator("scopes")
    @classmethod
    def _test_train_always(cls, v: list[str]) -> list[str]:
        if "test-train" not in v:
            raise ValueError("must include 'test-train'")
        return v


# -- ingest_vl -------------------------------------------------------------------------------------
Path_ = Annotated[str, Field(max_length=4096)]


class IngestLimitsParams(Section):
    """Bounds on one export file while it is read (``vlclean.vl_ingest.limits.IngestLimits``; README table)."""

    max_depth: Annotated[int, Field(ge=1, le=10_000)] = 64  # nesting of JSON objects and lists
    max_string_bytes: Annotated[int, Field(ge=1)] = 1_048_576  # one JSON string, CSV cell or parquet string
    max_item_bytes: Annotated[int, Field(ge=1)] = 16_777_216  # one media item of a JSON export
    max_items: Annotated[int, Field(ge=1)] = 50_000_000  # media items / rows in one export file
    max_extract_bytes: Annotated[int, Field(ge=1)] = 274_877_906_944  # bytes unpacked from one ZIP (256 GiB)
    max_compression_ratio: Annotated[float, Field(ge=1.0)] = 1000.0  # unpacked / packed size of a ZIP member


class IngestParams(Section):
    export: list[Path_] = Field(default_factory=list)  # one path (a string) or several
    dataset_prefixes: list[Path_] = Field(default_factory=list)
    limits: IngestLimitsParams = Field(default_factory=IngestLimitsParams)

    @field_validator("export", mode="before")
    @classmethod
    def _one_path(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [v] if v else []
        return v


# -- apply_tags ------------------------------------------------------------------------------------
class TagDef(Section):
    description: Annotated[str, Field(max_length=1000)] = ""
    action: Action = "review"


class Rule(Section):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    tag: Name
    action: Action | None = None
    issue: list[Name] | None = None
    unless_issue: list[Name] | None = None
    min_confidence: Fraction | None = None
    min_group_threshold: Fraction | None = None
    max_uniqueness: Fraction | None = None
    user_tags: list[Name] | None = None
    label_source: Name | None = None
    splits: list[Name] | None = None
    keep_best_of_group: bool = False
    group_by: Literal["duplicate", "cluster"] = "duplicate"
    relabel_to: Literal["suggested"] = "suggested"
    priority: Annotated[int, Field(ge=-1000, le=1000)] = 0

    @model_validator(mode="after")
    def _best_of_duplicates(self) -> Rule:
        if self.keep_best_of_group and self.group_by == "duplicate" and self.issue not in (None, ["duplicate"]):
            raise _Bad("issue", "keep_best_of_group on duplicates needs issue [duplicate]")
        return self


def _rules_problem(rules: list[Rule], taxonomy: dict[str, TagDef]) -> tuple[str, str] | None:
    """(relative key, message) of the first problem of a rule list, or None."""
    names = [r.name for r in rules]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        return "", f"rule names {dup} are used more than once"
    for i, r in enumerate(rules):
        if r.tag not in taxonomy:
            return f"[{i}].tag", f"{_show(r.tag)} is not in the taxonomy {sorted(taxonomy)}"
    return None


def validate_rules(rules: list[Rule], taxonomy: dict[str, TagDef], prefix: str) -> None:
    """Rule names unique, every tag in the taxonomy; else a ParamsError naming ``prefix[i].tag``."""
    problem = _rules_problem(rules, taxonomy)
    if problem:
        raise ParamsError(f"params key '{prefix}{problem[0]}': {problem[1]}")


def _tag(description: str, action: str) -> TagDef:
    return TagDef(description=description, action=action)  # type: ignore[arg-type]


def _default_taxonomy() -> dict[str, TagDef]:
    return {
        "mislabeled": _tag("The label is wrong", "drop"),
        "duplicate": _tag("A copy of another image of the dataset (one per group is kept)", "drop"),
        "near_duplicate": _tag("Has a near-identical look-alike (low uniqueness)", "drop"),
        "outlier": _tag("Does not belong to the dataset's domain", "drop"),
        "low_quality": _tag("Too dark, too bright or blurred", "review"),
        "ambiguous": _tag("Several classes could apply", "review"),
        "leak": _tag("Copy of a test image in train, or the reverse", "drop"),
        "unreadable": _tag("The file cannot be decoded", "drop"),
        "user_flagged": _tag("A person flagged it in Visual Layer", "drop"),
        "verified_ok": _tag("Checked by a person: correct as it is", "keep"),
    }


def _default_rule_sets() -> dict[str, list[Rule]]:
    quality, verified = ["blur", "dark", "bright"], ["verified_ok", "verified"]
    return {
        "default": [  # the team's cleaning policy
            Rule(name="low_uniqueness", tag="near_duplicate", max_uniqueness=0.3, unless_issue=["duplicate"],
                 splits=["train"]),
            Rule(name="keep_best_of_duplicates", tag="duplicate", issue=["duplicate"], keep_best_of_group=True,
                 splits=["train"]),
            Rule(name="mislabels", tag="mislabeled", issue=["mislabel"], min_confidence=0.7),
            Rule(name="label_outliers", tag="mislabeled", issue=["label_outlier"], min_confidence=0.8),
            Rule(name="outliers", tag="outlier", issue=["outlier"], min_confidence=0.75),
            Rule(name="quality", tag="low_quality", issue=quality, min_confidence=0.5),
            Rule(name="unreadable", tag="unreadable", issue=["invalid"]),
            Rule(name="leaks", tag="leak", issue=["leakage"]),
            Rule(name="user_tags", tag="user_flagged", user_tags=[
                "incorrect_label", "mislabeled", "delete", "remove", "poor_quality", "bad_example", "suspicious",
                "duplicate"]),
            Rule(name="verified", tag="verified_ok", user_tags=verified, priority=10),
        ],
        "conservative": [  # drop only what is near-certain; send the rest to people
            Rule(name="keep_best_of_exact_duplicates", tag="duplicate", issue=["duplicate"], min_group_threshold=0.98,
                 keep_best_of_group=True, splits=["train"]),
            Rule(name="mislabels", tag="mislabeled", issue=["mislabel"], min_confidence=0.9, action="review"),
            Rule(name="outliers", tag="outlier", issue=["outlier"], min_confidence=0.9, action="review"),
            Rule(name="quality", tag="low_quality", issue=quality, min_confidence=0.75, action="review"),
            Rule(name="unreadable", tag="unreadable", issue=["invalid"]),
            Rule(name="leaks", tag="leak", issue=["leakage"], action="review"),
            Rule(name="user_tags", tag="user_flagged", user_tags=["incorrect_label", "mislabeled", "delete", "remove"],
                 action="review"),
            Rule(name="verified", tag="verified_ok", user_tags=verified, priority=10),
        ],
    }


class ApplyTagsParams(Section):
    rule_set: Name = "default"  # the active rule set
    taxonomy: dict[Name, TagDef] = Field(default_factory=_default_taxonomy)
    rule_sets: dict[Name, list[Rule]] = Field(default_factory=_default_rule_sets)
    policy_file: Path_ | None = None  # a policy YAML in the research team's format; replaces rule_set

    @model_validator(mode="after")
    def _consistent(self) -> ApplyTagsParams:
        if self.rule_set not in self.rule_sets:
            raise _Bad("rule_set", f"{_show(self.rule_set)} is not one of {sorted(self.rule_sets)}")
        for name, rules in self.rule_sets.items():
            problem = _rules_problem(rules, self.taxonomy)
            if problem:
                raise _Bad(f"rule_sets.{name}{problem[0]}", problem[1])
        if self.policy_file:  # read here so a bad policy file fails before any work (vlclean/policy.py)
            try:
                rules = self.rules
            except OSError as err:
                raise _Bad("policy_file", f"{_show(self.policy_file)} cannot be read: {err.strerror}") from None
            problem = _rules_problem(rules, self.taxonomy)
            if problem:
                raise _Bad(f"policy_file{problem[0]}", f"({_show(self.policy_file)}) {problem[1]}")
        return self

    @property
    def rules(self) -> list[Rule]:
        if self.policy_file:
            from vlclean.policy import read_team_policy

            return read_team_policy(self.policy_file)[1]
        return self.rule_sets[self.rule_set]

    def record(self) -> dict:
        """The policy in force (vlclean.policy.policy_record), written beside the manifest."""
        from vlclean.policy import policy_record, read_team_policy

        if self.policy_file:
            name, rules = read_team_policy(self.policy_file)
            return policy_record(name, f"policy_file {self.policy_file}", rules, self.taxonomy)
        return policy_record(self.rule_set, "rule_set", self.rules, self.taxonomy)


# -- build_manifest --------------------------------------------------------------------------------
class ClassDropCap(Section):
    """Policy guard (vlclean/policy_analysis.py): the most of one class the policy may remove."""

    share: Fraction | None = 0.4  # null: no cap
    action: Literal["report", "restore"] = "report"


class OverPruning(Section):
    """A class is flagged when it loses >= min_drop_fraction and >= ratio_to_median x the median class."""

    min_drop_fraction: Fraction = 0.1
    ratio_to_median: Annotated[float, Field(ge=1.0, le=1e6)] = 2.0
    high_ratio: Annotated[float, Field(ge=1.0, le=1e6)] = 3.0  # severity high at this ratio, else medium

    @model_validator(mode="after")
    def _ordered(self) -> OverPruning:
        if self.high_ratio < self.ratio_to_median:
            raise _Bad("high_ratio", f"{self.high_ratio} is below ratio_to_median {self.ratio_to_median}")
        return self


class ManifestParams(Section):
    review_action: Literal["keep", "drop"] = "keep"  # what an undecided 'review' becomes
    apply_to_test: bool = False  # apply drop/relabel decisions to test images too (default: train only)
    leak_tiers: list[Literal["exact", "near_duplicate", "similar"]] = Field(
        default_factory=lambda: ["exact", "near_duplicate"])
    exclude_leaked_test: bool = True  # leaked test images leave the clean test view
    drop_leaked_train_copies: bool = True  # drop the train copy of a leak
    max_class_drop: ClassDropCap = Field(default_factory=ClassDropCap)  # policy guard
    over_pruning: OverPruning = Field(default_factory=OverPruning)
    class_page_size: Annotated[int, Field(ge=1, le=10_000)] = 50  # classes per page of the per-class figures


# -- noise, denoise --------------------------------------------------------------------------------
PAIR_PRESET_NAMES = ("mnist", "cifar10", "cifar100", "fashion_mnist")  # vlclean.noise.PAIR_PRESETS (test-checked)


class NoiseParams(Section):
    rate: Annotated[float, Field(ge=0.0, le=0.95)] = 0.0
    kind: Literal["random", "centroid", "intelligent", "nn", "border", "cluster", "pair", "idn"] = "random"
    features: FeatureSpace = "pixels"  # space of neighbours, margins and look-alikes
    pixels_side: PixelsSide = 8
    k: Annotated[int, Field(ge=2, le=1000)] = 50  # neighbours searched per image (nn, border, cluster, margins)
    temperature: Annotated[float, Field(ge=1e-4, le=10.0)] = 0.05  # centroid
    boundary_top_frac: Annotated[float, Field(ge=1e-6, le=1.0)] = 0.25  # border
    cluster_size: Annotated[int, Field(ge=1, le=1000)] = 5  # cluster
    pairs: Name | dict[int | Name, int | Name] = ""  # pair: a preset or {from_class: to_class}
    idn_std: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1  # idn
    seed: Seed | None = None  # None: base.seed

    @field_validator("pairs", mode="before")
    @classmethod
    def _pairs_shape(cls, v: Any) -> Any:  # one message instead of one per union member
        def scalar(x: Any) -> bool:
            return (isinstance(x, int) and not isinstance(x, bool)) or (isinstance(x, str) and len(x) <= 200)

        if scalar(v) and isinstance(v, str) or (isinstance(v, dict) and all(scalar(k) and scalar(x)
                                                                             for k, x in v.items())):
            return v
        raise ValueError("must be a preset name or a mapping {from_class: to_class} of class ids or names")

    @model_validator(mode="after")
    def _pairs_needed(self) -> NoiseParams:
        if self.kind == "pair" and not self.pairs:
            raise _Bad("pairs", f"is required when kind is 'pair': a preset {sorted(PAIR_PRESET_NAMES)} or a "
                                "mapping {from_class: to_class}")
        return self


class DenoiseParams(Section):
    method: Literal["none", "oracle", "cleanlab", "analyzer", "vl_export"] = "none"
    action: Literal["drop", "relabel"] = "drop"
    recall: Fraction = 0.8  # oracle: share of flipped labels caught
    false_positive_rate: Fraction = 0.02  # oracle: share of clean labels wrongly caught
    miss: Literal["uniform", "hardest"] = "uniform"  # oracle: which flips it misses / which clean ones it flags
    relabel_accuracy: Fraction = 1.0  # oracle relabel: share of caught flips given their true class
    features: FeatureSpace = "pixels"  # cleanlab's classifier input; oracle's margins
    pixels_side: PixelsSide = 8
    k: Annotated[int, Field(ge=2, le=1000)] = 50  # oracle: neighbours for the margins (miss: hardest)
    classifier: Classifier = "auto"
    C: Annotated[float, Field(gt=0.0)] = 3.0
    folds: Annotated[int, Field(ge=2, le=20)] = 5
    vl_export: Path_ = ""  # vl_export: path of a VL export made of the noisy dataset
    vl_min_confidence: Fraction = 0.5  # vl_export: mislabel issues at or above this confidence
    seed: Seed | None = None

    @model_validator(mode="after")
    def _export_needed(self) -> DenoiseParams:
        if self.method == "vl_export" and not self.vl_export:
            raise _Bad("vl_export", "is required when method is 'vl_export': the path of a Visual Layer export of "
                                    "the noisy dataset (README, 'Cleaning arms')")
        return self


# -- train, evaluate -------------------------------------------------------------------------------
class WandbParams(Section):
    """Optional Weights & Biases logging (rank 0 only); needs the ``wandb`` package when enabled."""

    enabled: bool = False
    project: Name = "vl-imagenet-cleaning"
    entity: Name | None = None
    mode: Literal["online", "offline"] = "online"
    name: Name | None = None


class TrainParams(Section):
    """The ``train`` section. Choices: schedule cosine | step | constant; augmentation none | standard
    (random crop with ``crop_padding`` + horizontal flip when ``hflip``); loader auto | memory | stream;
    amp_dtype bfloat16 | float16 (float16 on CUDA only). Device and workers: ``runtime.train``."""

    epochs: Annotated[int, Field(ge=1, le=10_000)] = 15
    batch_size: Annotated[int, Field(ge=2, le=65_536)] = 128  # per process (torchrun: x processes)
    lr: Annotated[float, Field(gt=0.0, le=100.0)] = 0.05
    momentum: Annotated[float, Field(ge=0.0, le=0.999)] = 0.9
    weight_decay: Annotated[float, Field(ge=0.0, le=1.0)] = 5e-4
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    warmup_epochs: Annotated[float, Field(ge=0.0)] = 1.0
    step_milestones: list[Fraction] = Field(default_factory=lambda: [0.5, 0.75])  # fractions of the epochs
    step_gamma: Fraction = 0.1
    image_size: Annotated[int, Field(ge=8, le=1024)] = 32
    stem: Literal["auto", "small", "imagenet"] = "imagenet"  # auto: small when image_size <= 64
    augmentation: Literal["none", "standard"] = "standard"
    crop_padding: Annotated[int, Field(ge=0)] = 4
    hflip: bool = False
    label_smoothing: Annotated[float, Field(ge=0.0, le=0.5)] = 0.0
    max_train_images: Annotated[int, Field(ge=0)] = 0  # 0 = all
    labels: Literal["cleaned", "raw"] = "cleaned"  # raw: every readable train image with its given label
    val_fraction: Annotated[float, Field(ge=0.0, le=0.5)] = 0.1  # held out from train for the per-epoch curves
    seed: Seed | None = None  # None: base.seed
    amp: bool = False
    amp_dtype: Literal["bfloat16", "float16"] = "bfloat16"
    deterministic: bool = True
    loader: Loader = "auto"  # results: memory and stream orders differ (stream shuffles within row-group windows)
    cache_max_mb: Annotated[int, Field(ge=0)] = 2048
    stream_window_blocks: Annotated[int, Field(ge=1, le=1024)] = 4
    wandb: WandbParams = Field(default_factory=WandbParams)

    @model_validator(mode="after")
    def _cross(self) -> TrainParams:
        if self.warmup_epochs > self.epochs:
            raise _Bad("warmup_epochs", f"{self.warmup_epochs} is more than epochs ({self.epochs})")
        if self.crop_padding > self.image_size // 2:
            raise _Bad("crop_padding", f"{self.crop_padding} is more than half image_size ({self.image_size})")
        return self

    def results_key(self) -> dict:
        """The params that change what training computes (not how fast): part of the checkpoint key."""
        out = self.model_dump()
        out.pop("wandb")
        return out


class EvaluateParams(Section):
    amp: bool = False
    amp_dtype: Literal["bfloat16", "float16"] = "bfloat16"


# -- runtime: speed, not results -------------------------------------------------------------------
class DownloadRuntime(Section):
    workers: Workers = 2  # processes that decode/verify images


class EmbeddingRuntime(Section):
    batch_size: Annotated[int, Field(ge=1, le=65_536)] = 64
    device: Annotated[str, Field(pattern=r"^(cpu|auto|mps|cuda(:\d{1,3})?)$")] = "cpu"
    # torch threads of the embedding pass; auto: the cores the decode workers leave free, at least 1
    threads: Annotated[int, Field(ge=1, le=1024)] | Literal["auto"] = "auto"


class AnalyzeRuntime(Section):
    workers: Workers = 2  # processes for decoding + hashing (also the standalone detect_leaks)
    chunk_size: Annotated[int, Field(ge=1, le=1_000_000)] = 256
    embedding: EmbeddingRuntime = Field(default_factory=EmbeddingRuntime)


class TrainRuntime(Section):
    device: Device = "auto"
    workers: Annotated[int, Field(ge=0, le=256)] = 0  # DataLoader processes


class EvaluateRuntime(Section):
    batch_size: Annotated[int, Field(ge=1, le=65_536)] = 256
    device: Device = "auto"
    workers: Annotated[int, Field(ge=0, le=256)] = 0
    loader: Loader = "auto"
    cache_max_mb: Annotated[int, Field(ge=0)] = 2048


class RuntimeParams(Section):
    """Knobs that change speed, never results: no stage lists ``runtime`` as a DVC param, so changing one
    reruns nothing. (Device and batch size can move floats in the last bits; the model is the same.)"""

    download: DownloadRuntime = Field(default_factory=DownloadRuntime)
    analyze: AnalyzeRuntime = Field(default_factory=AnalyzeRuntime)
    train: TrainRuntime = Field(default_factory=TrainRuntime)
    evaluate: EvaluateRuntime = Field(default_factory=EvaluateRuntime)


# -- the whole file --------------------------------------------------------------------------------
class Params(Section):
    """The whole ``params.yaml``: one section per stage, plus ``base``; an unknown section is refused."""

    base: BaseParams = Field(default_factory=BaseParams)
    download: DownloadParams = Field(default_factory=DownloadParams)
    analyze: AnalyzeParams = Field(default_factory=AnalyzeParams)
    detect_leaks: LeakParams = Field(default_factory=LeakParams)
    ingest_vl: IngestParams = Field(default_factory=IngestParams)
    apply_tags: ApplyTagsParams = Field(default_factory=ApplyTagsParams)
    build_manifest: ManifestParams = Field(default_factory=ManifestParams)
    noise: NoiseParams = Field(default_factory=NoiseParams)
    denoise: DenoiseParams = Field(default_factory=DenoiseParams)
    train: TrainParams = Field(default_factory=TrainParams)
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)
    runtime: RuntimeParams = Field(default_factory=RuntimeParams)


# -- reading (the YAML guard and error messages: vlclean.params_yaml) ------------------------------
def load_params(path: str | Path = "params.yaml", *, missing_ok: bool = False) -> Params:
    """The whole params file, validated. ``missing_ok``: a missing file gives the defaults (standalone use)."""
    if missing_ok and not Path(path).exists():
        return Params()
    return parse(Params, read_params_file(path), "")


# -- JSON Schema -----------------------------------------------------------------------------------
SCHEMA_FILE = "params.schema.json"


def json_schema() -> dict:
    schema = Params.model_json_schema()
    schema["title"] = "vl-imagenet-cleaning params.yaml"
    return schema


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="params.yaml tools: check a file, or (re)write the JSON Schema")
    p.add_argument("--write-schema", nargs="?", const=SCHEMA_FILE, default=None, metavar="PATH",
                   help=f"write the JSON Schema of params.yaml (default {SCHEMA_FILE})")
    p.add_argument("--check", default=None, metavar="PARAMS", help="validate a params file")
    args = p.parse_args(argv)
    if args.write_schema:
        from vlclean.storage import write_text

        write_text(args.write_schema, schema_text())
        print(f"wrote {args.write_schema}")
    if args.check:
        try:
            load_params(args.check)
        except ParamsError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"{args.check}: valid")
    if not (args.write_schema or args.check):
        p.print_help()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

