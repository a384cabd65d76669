"""The command line of ``python -m trm_jax.train``: flags, bad input, the closing summary.

``python -m trm_jax.train --config=configs/X.py --workdir=DIR [--config.a.b=v ...] [--quiet]``
(see :mod:`trm_jax.train` for what a run does). Bad input (a config file that does not load, a
--workdir that is a file, a work dir another run holds) stops with one sentence and exit status
2; a non-finite loss with exit status 1; SIGINT / SIGTERM save a checkpoint, print where and the
command that resumes, and exit with 130 / 143.
"""

from __future__ import annotations

import os
import sys

import jax
import ml_collections
from absl import flags
from ml_collections import config_flags

from trm_jax import checkpoint as ckpt
from trm_jax import config as config_lib
from trm_jax import guards, train
from trm_jax import sharding as shd
from trm_jax.data.dataset import DatasetError

BAD_INPUT = (
    config_lib.ConfigError,
    shd.MeshError,
    DatasetError,
    ckpt.CheckpointError,
    guards.GuardError,
    FileNotFoundError,
)


def check_config_file(path: str) -> None:
    """A config file that exists, is a file, imports, and defines get_config (ConfigError)."""
    if not os.path.exists(path):
        raise config_lib.ConfigError(f"Config file {path} does not exist.")
    if not os.path.isfile(path):
        raise config_lib.ConfigError(f"Config file {path} is a directory, not a .py file.")
    try:
        module = config_lib.config_module(path)
    except SyntaxError as e:
        raise config_lib.ConfigError(
            f"Config file {path} has a syntax error at line {e.lineno} ({e.msg})."
        ) from None
    except Exception as e:  # whatever the file raises while it is imported
        raise config_lib.ConfigError(
            f"Config file {path} fails to import ({type(e).__name__}: {e})."
        ) from None
    if not callable(getattr(module, "get_config", None)):
        raise config_lib.ConfigError(
            f"Config file {path} defines no get_config(); see configs/*.py for the layout."
        )


def _unknown_override(argv) -> str | None:
    """The first ``--config.a.b`` override naming a key the config file does not have."""
    path = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if not path or not os.path.exists(path):
        return None
    cfg = config_lib.config_module(path).get_config()
    for a in argv:
        if a.startswith("--config."):
            key = a[len("--config.") :].split("=", 1)[0]
            node = cfg
            for part in key.split("."):
                if not isinstance(node, ml_collections.ConfigDict) or part not in node:
                    return key
                node = node[part]
    return None


def parse(argv):
    """``argv`` (program name first) -> (config, workdir, quiet); ConfigError on bad input."""
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).", flag_values=fv)
    flags.DEFINE_string("workdir", None, "Work dir for checkpoints and logs.", flag_values=fv)
    flags.DEFINE_bool("quiet", False, "No progress output.", flag_values=fv)
    path = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if path:
        check_config_file(path)
    saved_argv, sys.argv = sys.argv, list(argv)  # config_flags reads overrides from sys.argv
    try:
        fv(argv)
    except Exception as e:  # absl / ml_collections raise many types for bad flags
        unknown = _unknown_override(argv)
        if unknown:
            raise config_lib.ConfigError(f"Unknown config key {unknown} (not in {path}).") from e
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise config_lib.ConfigError(f"Bad command line: {msg.rstrip('.')}.") from e
    finally:
        sys.argv = saved_argv
    if fv.config is None:
        raise config_lib.ConfigError("--config=configs/<name>.py is required.")
    if not fv.workdir:
        raise config_lib.ConfigError("--workdir=DIR is required.")
    guards.check_output_dir(fv.workdir, "--workdir")
    return fv.config, fv.workdir, fv.quiet


def _command(argv) -> str:
    """The command line that resumes this run (the same one), quoted for a shell."""
    import shlex

    return "`" + shlex.join(["python", "-m", "trm_jax.train", *argv[1:]]) + "`"


def summary(result: train.RunResult, workdir: str) -> str:
    """The closing line: the final evaluation, or that there was nothing left to train."""
    m = result.eval_metrics
    if not m:
        return (
            f"Nothing to train: {workdir} already holds the finished run (step {result.step}); "
            f"score it with `python -m trm_jax.evaluate --workdir {workdir}`."
        )
    arc = f"ARC pass@2 {m['ARC/pass@2']:.4f}, " if "ARC/pass@2" in m else ""
    return (
        f"Done: step {result.step}, {arc}held-out exact accuracy "
        f"{m.get('exact_accuracy', 0):.4f} (token accuracy {m.get('accuracy', 0):.4f}, "
        f"{int(m.get('count', 0))} puzzles) in {result.seconds / 60:.1f} min; checkpoints in "
        f"{result.checkpoint_dir}"
    )


def main(argv=None) -> int:
    argv = list(sys.argv if argv is None else argv)
    try:
        config, workdir, quiet = parse(argv)
        result = train.run(config, workdir, verbose=not quiet, resume_hint=_command(argv))
    except BAD_INPUT as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except train.TrainingStopped as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except train.Interrupted as e:
        print(str(e), file=sys.stderr, flush=True)
        return e.exit_code
    except KeyboardInterrupt:  # before the signal handlers were installed: nothing to save yet
        print("Interrupted before training started; no checkpoint was saved.", file=sys.stderr)
        return 130
    if jax.process_index() == 0:
        print(summary(result, workdir), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
