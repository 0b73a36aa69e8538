"""Lightning callbacks of seq2seq-lit."""

from .attention_heatmaps import AttentionHeatmaps
from .follow_run_folder import FollowRunFolder
from .rank_streams import RankRandomStreams
from .resume import ResumeCheckpoint
from .sample_translations import SampleTranslations
from .training_tokens import TrainingTokens
from .validate_on_last_step import ValidateOnLastStep

__all__ = [
    "AttentionHeatmaps",
    "FollowRunFolder",
    "RankRandomStreams",
    "ResumeCheckpoint",
    "SampleTranslations",
    "TrainingTokens",
    "ValidateOnLastStep",
]
