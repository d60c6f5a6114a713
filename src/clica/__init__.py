"""clica: identifiable contrastive learning."""
__version__ = "0.1.0"
