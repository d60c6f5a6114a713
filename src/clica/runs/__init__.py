"""Run folders, seeds, devices and atomic file writes shared by all experiments.

A run folder holds ``config.json`` (every setting, the seed actually used,
library versions and torch's thread count), ``metrics.jsonl`` (one JSON object per log step),
checkpoints (``*.pt``) and a final ``summary.json``. Every file is written
atomically (temporary name, then rename) so an interrupted run never leaves a
truncated file behind.

Modules: :mod:`.atomic` (whole-or-nothing writes), :mod:`.seeds`, :mod:`.environment` (device, library
versions), :mod:`.checkpoints` (safe loading), :mod:`.folders` (run folders) and :mod:`.locks`.
"""

from .atomic import (
    append_line,
    atomic_path,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_json,
    os_error_reason,
    write_error,
)
from .checkpoints import (
    check_fields,
    check_module_state,
    load_module_state,
    load_optimizer_state,
    load_torch_file,
    loading,
)
from .environment import library_versions, resolve_device
from .folders import RunDir, check_output_folder, check_run_folder, first_missing, run_command
from .locks import FolderLock
from .seeds import EVALUATION_SEED, SEED_MAX, check_seed, resolve_seed, seed_everything

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "append_line",
    "os_error_reason",
    "write_error",
    "atomic_write_json",
    "atomic_torch_save",
    "SEED_MAX",
    "check_seed",
    "EVALUATION_SEED",
    "resolve_seed",
    "seed_everything",
    "resolve_device",
    "library_versions",
    "load_torch_file",
    "check_fields",
    "load_module_state",
    "check_module_state",
    "load_optimizer_state",
    "loading",
    "RunDir",
    "run_command",
    "check_output_folder",
    "check_run_folder",
    "first_missing",
    "FolderLock",
]
