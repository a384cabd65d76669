"""Runs trm_jax.train.run in a subprocess for the training tests, with optional faults.

usage: python tests/_train_driver.py WORKDIR MODE [--config.x=y ...]
MODE: plain | kill_after_save=N | kill_during_save=N | signal_at=N:SIGINT|SIGTERM
On a normal finish, process 0 writes WORKDIR/final.npz with every leaf of the final state.
signal_at runs the command line (trm_jax.train_cli.main) and sends the process the signal right
after its N-th train step; its exit status is the command's.
"""

import dataclasses
import os
import signal
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def main():
    workdir, mode, *overrides = sys.argv[1:]
    import jax
    import numpy as np
    from absl import flags
    from ml_collections import config_flags

    from trm_jax import checkpoint as ckpt
    from trm_jax import train

    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=fv)
    fv(["driver", f"--config={REPO}/configs/sudoku_cpu.py", *overrides])
    config = fv.config

    if mode.startswith("kill_after_save="):
        at = int(mode.split("=")[1])
        real_save = ckpt.save

        def save(manager, step, *a, **k):
            real_save(manager, step, *a, **k)
            if step == at:
                os.kill(os.getpid(), signal.SIGKILL)

        ckpt.save = save
    elif mode.startswith("kill_during_save="):
        at = int(mode.split("=")[1])
        real_save = ckpt.save
        cdir = os.path.join(os.path.abspath(workdir), "checkpoints")

        def watch():
            # SIGKILL as soon as orbax's temporary directory for step `at` appears.
            while True:
                names = os.listdir(cdir) if os.path.isdir(cdir) else []
                if any(n.startswith(f"{at}.") and "tmp" in n for n in names):
                    os.kill(os.getpid(), signal.SIGKILL)
                time.sleep(0.0005)

        def save(manager, step, *a, **k):
            if step == at:
                threading.Thread(target=watch, daemon=True).start()
                time.sleep(0.05)
            real_save(manager, step, *a, **k)
            if step == at:
                time.sleep(5)  # the watcher must have fired; never reached
                print("save finished before the kill", file=sys.stderr)
                sys.exit(3)

        ckpt.save = save

    elif mode.startswith("signal_at="):
        at, name = mode.split("=")[1].split(":")
        from trm_jax import train_cli

        real_build = train.build_steps

        def build_steps(*a, **k):
            steps = real_build(*a, **k)
            calls = [0]

            def train_step(state, batch):
                out = steps.train(state, batch)
                calls[0] += 1
                if calls[0] == int(at):
                    os.kill(os.getpid(), getattr(signal, name))
                return out

            return dataclasses.replace(steps, train=train_step)

        train.build_steps = build_steps
        argv = ["train", f"--config={REPO}/configs/sudoku_cpu.py", f"--workdir={workdir}"]
        sys.exit(train_cli.main(argv + [*overrides, "--quiet"]))

    result = train.run(config, workdir, verbose=False)
    from jax.experimental import multihost_utils

    full = multihost_utils.process_allgather(result.state, tiled=True)
    if jax.process_index() == 0:
        leaves = jax.tree_util.tree_flatten_with_path(full)[0]
        np.savez(
            os.path.join(workdir, "final.npz"),
            **{jax.tree_util.keystr(p): np.asarray(v) for p, v in leaves},
        )


if __name__ == "__main__":
    main()
