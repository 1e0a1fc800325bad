"""A training run's configuration: the loss weights and example shape (ObjectiveConfig) and every
other knob of the run (TrainConfig), each with its default and help text. Saved in the
checkpoint, so a resumed run is the same run; kept apart from the training code so that what
only reads a config, such as the command line, need not load torch."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..model.loading import DEFAULT_MODEL


@dataclass
class ObjectiveConfig:
    """Loss weights (0 switches a loss off) and the shape of a training example."""

    passage: float = field(default=1.0, metadata={"help": "reconstruct each passage from its passage memory"})
    sentence: float = field(default=0.5, metadata={"help": "reconstruct each sentence from its sentence memory"})
    document: float = field(default=0.25, metadata={
        "help": "regenerate the window's first passage from the final document state (coarse -> fine)"})
    retention: float = field(default=0.5, metadata={
        "help": "language-model the next passage from the document state carried so far"})
    cycle: float = field(default=0.1, metadata={
        "help": "re-compressing the reconstruction gives back the memory (relative squared error)"})
    query: float = field(default=0.1, metadata={
        "help": "context-query pairs: a sentence compressed alone must pick out its in-context sentence "
                "memory among the batch's (InfoNCE); this is what memory search compares"})
    query_temperature: float = 0.05
    window: int = field(default=3, metadata={"help": "consecutive passages per example (BPTT length)"})
    ratios: list[int] = field(default_factory=lambda: [4], metadata={
        "help": "compression ratios sampled per step (one adapter serves them all)"})

    def weights(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in ("passage", "sentence", "document", "retention", "cycle", "query")}


@dataclass
class TrainConfig:
    """Every knob of a training run; saved in the checkpoint so a resumed run is the same run."""

    data: str = field(metadata={"help": "folder of documents or chat exports to train on (any format ingest reads)"})
    output: str = field(metadata={"help": "folder for checkpoints and the finished adapter"})
    base_model: str = field(default=DEFAULT_MODEL, metadata={"help": "base model the adapter is for"})
    steps: int = field(default=1000, metadata={"help": "total optimizer steps (raise it to continue a run)"})
    batch_size: int = field(default=8, metadata={"help": "passages per step (whole windows, across all processes)"})
    init_adapter: str | None = field(default=None, metadata={
        "help": "adapter folder to start from (warm start; its missing embeddings start fresh)"})
    objectives: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    lr: float = field(default=1e-3, metadata={"help": "learning rate of the LoRA weights"})
    memory_lr: float = field(default=1e-2, metadata={"help": "learning rate of the memory embeddings"})
    warmup_steps: int = 20
    decay_steps: int = field(default=0, metadata={"help": "linear decay to zero over the last N steps "
                                                          "(warmup-stable-decay; 0 keeps the rate constant)"})
    stop_at: int | None = field(default=None, metadata={
        "help": "checkpoint and stop at this step without finishing the run (staged runs: resume later, "
                "possibly with other loss weights, on the same learning-rate schedule)"})
    grad_clip: float = 1.0
    heldout_fraction: float = field(default=0.1, metadata={"help": "share of files kept out of training"})
    eval_every: int = field(default=100, metadata={"help": "held-out evaluation every N steps (0: only at the end)"})
    eval_passages: int = field(default=32, metadata={"help": "held-out passages per evaluation"})
    checkpoint_minutes: float = field(default=5.0, metadata={"help": "minutes between checkpoints (a killed run "
                                                                     "resumes from the last one)"})
    seed: int = field(default=0, metadata={"help": "random seed: initial weights, example order, per-step sampling"})
    device: str = "auto"
