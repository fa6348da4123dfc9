from .trainer import Trainer, add_global_norm_clipping

__all__ = ["Trainer", "add_global_norm_clipping"]
