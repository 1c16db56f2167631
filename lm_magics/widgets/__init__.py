"""Interactive front-ends (need ipywidgets): CompletionPanel, ChatAssistant, background training.

They are plain classes that own their ipywidgets (``.widget``), display themselves, and call only the
public API (``LanguageModel`` methods and the model registry).
"""

from .chat import ChatAssistant
from .monitor import TrainingMonitor, start_background_training
from .panel import CompletionPanel

__all__ = ["CompletionPanel", "ChatAssistant", "TrainingMonitor", "start_background_training"]
