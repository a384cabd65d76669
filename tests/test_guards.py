"""Output checks, path rules, the work-dir lock and signal handling (trm_jax.guards)."""

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from trm_jax import guards
from trm_jax.guards import GuardError


def _one_sentence(e: BaseException) -> None:
    text = str(e)
    assert "\n" not in text and text.endswith("."), text


def test_output_dir_refuses_a_file_a_file_parent_and_system_dirs(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    for bad, word in [(f, "is a file"), (f / "sub", "is a file"), ("/proc/x", "system")]:
        with pytest.raises(GuardError, match=word) as e:
            guards.check_output_dir(bad)
        _one_sentence(e.value)
    assert guards.check_output_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checking creates nothing


def test_output_file_refuses_a_directory(tmp_path):
    with pytest.raises(GuardError, match="is a directory"):
        guards.check_output_file(tmp_path)
    with pytest.raises(GuardError, match="is a file"):
        (tmp_path / "f").write_text("x")
        guards.check_output_file(tmp_path / "f" / "out.png")
    assert guards.check_output_file(tmp_path / "a" / "b.json").name == "b.json"


@pytest.mark.parametrize("name", ["../x", "a/b", "..", "", "/etc", "a\\b"])
def test_components_with_separators_or_dotdot_are_refused(name):
    with pytest.raises(GuardError) as e:
        guards.check_component(name, "split")
    _one_sentence(e.value)


def test_inside_keeps_relative_paths_under_their_root(tmp_path):
    (tmp_path / "d").mkdir()
    assert guards.inside(tmp_path, "d", "data.path") == tmp_path / "d"
    for bad in ["../../etc", "/etc", "d/../../x"]:
        with pytest.raises(GuardError, match="outside"):
            guards.inside(tmp_path, bad, "data.path")


def test_dataset_out_never_replaces_a_foreign_directory(tmp_path):
    foreign = tmp_path / "notes"
    (foreign / "sub").mkdir(parents=True)
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(GuardError, match="not a trm_jax dataset") as e:
        guards.check_dataset_out(foreign, overwrite=True)
    _one_sentence(e.value)
    ours = tmp_path / "ours"
    ours.mkdir()
    guards.check_dataset_out(ours, overwrite=False)  # empty: fine
    guards.write_marker(ours, "test")
    with pytest.raises(GuardError, match="--overwrite"):
        guards.check_dataset_out(ours, overwrite=False)
    guards.check_dataset_out(ours, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "keep me"


_HOLDER = textwrap.dedent(
    """
    import sys, time
    from trm_jax.guards import WorkdirLock
    lock = WorkdirLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    time.sleep(60)
    """
)


def test_a_second_lock_names_the_holder_and_a_killed_holder_leaves_no_stale_lock(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(GuardError, match=f"pid {proc.pid}") as e:
            guards.WorkdirLock(tmp_path).acquire()
        _one_sentence(e.value)
    finally:
        proc.kill()
        proc.wait()
    with guards.WorkdirLock(tmp_path):  # the kernel dropped the dead holder's lock
        pass
    with guards.WorkdirLock(tmp_path):  # and release lets the next one in
        pass


_LOOP = textwrap.dedent(
    """
    import sys, time
    from trm_jax.guards import StopSignals
    with StopSignals(announce=False) as stop:
        print("ready", flush=True)
        steps = 0
        while stop.requested is None and steps < 600:
            time.sleep(0.05)
            steps += 1
        if stop.requested is not None:
            time.sleep(float(sys.argv[1]))  # "saving"
            print("saved", stop.name, flush=True)
            sys.exit(stop.exit_code)
    """
)


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_first_signal_stops_at_a_step_boundary_with_its_exit_code(sig, code):
    proc = subprocess.Popen([sys.executable, "-c", _LOOP, "0"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == code
    assert out.strip() == f"saved {signal.Signals(sig).name}"


def test_second_signal_exits_at_once():
    # The "save" takes 600 s: only an immediate exit returns before communicate's timeout.
    proc = subprocess.Popen([sys.executable, "-c", _LOOP, "600"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "saved" not in out
