"""Data parallelism: 8 devices == 1 device, and 2 processes x 2 devices == 4 devices (both slow: the
other training tests run on the 8-device mesh by default)."""

import chex
import jax
import numpy as np
import pytest
from train_helpers import fast_train, free_port, make_config, start_python

from mothernet_jax.train import make_mesh
from mothernet_jax.train.mesh import agree, host_values, put_replicated

STEPS = 3


@pytest.fixture(scope="module")
def eight_devices():
    assert jax.device_count() == 8, "tests/conftest.py forces 8 CPU devices"
    return fast_train(make_config(steps=STEPS), None, mesh=make_mesh())


@pytest.mark.slow
def test_eight_devices_train_like_one_device_with_the_same_global_batch(eight_devices):
    one = fast_train(make_config(steps=STEPS), None, mesh=make_mesh(jax.devices()[:1]))
    assert one.step == eight_devices.step == STEPS
    np.testing.assert_allclose(one.losses, eight_devices.losses, rtol=1e-5)
    chex.assert_trees_all_close(one.params, eight_devices.params, atol=1e-5, rtol=0)


def test_processes_agree_on_the_most_urgent_stop_and_read_their_own_copies():
    """The multi-host helpers in one process: the all-gathered stop reason, host values of a
    replicated array (two processes: test_two_processes_with_two_devices_each_equal_one_process_with_four)."""
    assert [agree(reason) for reason in (None, "time_limit", "SIGTERM", "SIGINT", "due")] == [
        None, "time_limit", "SIGTERM", "SIGINT", "time_limit"
    ]  # fmt: skip
    mesh = make_mesh()
    replicated_tree = put_replicated({"w": np.arange(6.0).reshape(2, 3)}, mesh)
    assert replicated_tree["w"].sharding.is_fully_replicated and len(replicated_tree["w"].devices()) == 8
    np.testing.assert_array_equal(host_values(replicated_tree)["w"], np.arange(6.0).reshape(2, 3))


MULTIHOST = """
import sys
import numpy as np
from mothernet_jax.train import TrainConfig, initialize_distributed, train
import jax

port, process, config_path, workdir, out = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
initialize_distributed(f"localhost:{port}", num_processes=2, process_id=process)
assert jax.process_count() == 2 and jax.device_count() == 4 and jax.local_device_count() == 2
config = TrainConfig.from_json(open(config_path).read())
first = train(config, workdir, stop_at=2, progress=False)  # both processes checkpoint together
result = train(config, workdir, progress=False)  # and resume together
assert (first.step, result.first_step, result.step) == (2, 2, config.steps)
np.savez(out, *jax.tree.leaves(result.params), losses=np.asarray(first.losses + result.losses))
"""


@pytest.mark.slow
def test_two_processes_with_two_devices_each_equal_one_process_with_four(tmp_path):
    """The two processes also checkpoint after 2 steps and resume from it (orbax across hosts)."""
    config = make_config(steps=STEPS)
    config_path = tmp_path / "config.json"
    config_path.write_text(config.to_json())
    port = str(free_port())
    processes = [
        start_python(
            MULTIHOST,
            port,
            str(i),
            str(config_path),
            str(tmp_path / "run"),
            str(tmp_path / f"params{i}.npz"),
            device_count=2,
            log=tmp_path / f"process{i}.log",
        )
        for i in range(2)
    ]
    four = fast_train(config, None, mesh=make_mesh(jax.devices()[:4]))
    for i, process in enumerate(processes):
        assert process.wait(timeout=600) == 0, (tmp_path / f"process{i}.log").read_text()[-3000:]
    results = [np.load(tmp_path / f"params{i}.npz") for i in range(2)]
    leaves = [[r[f"arr_{j}"] for j in range(len(r.files) - 1)] for r in results]
    for a, b in zip(*leaves, strict=True):
        np.testing.assert_array_equal(a, b)  # every process holds the same parameters
    np.testing.assert_allclose(results[0]["losses"], four.losses, rtol=1e-5)
    chex.assert_trees_all_close(leaves[0], jax.tree.leaves(four.params), atol=1e-5, rtol=0)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["2", "3"]
