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


@pytest.mark.slow
def test_a_users_own_pmap_loop_over_the_per_device_functions_equals_the_mesh_step():
    """The per-device functions (`device_sample`, `device_step`) are what a pmap-based loop of a
    user's own maps over the devices: the same tasks, the same state as `TrainStep` on the mesh."""
    import functools

    from train_helpers import FAST_COMPILE

    from mothernet_jax.train.budget import learning_rate
    from mothernet_jax.train.step import device_sample, device_step, init_state, task_sampler
    from mothernet_jax.train.stepper import TrainStep

    config = make_config(batch_size=16, prior_batch=2)  # 8 prior calls a step: one per device
    devices = jax.local_devices()
    mesh_step = TrainStep(config, make_mesh(), compiler_options=FAST_COMPILE)
    mesh_state = mesh_step.init()

    # the user's loop: pmap the per-device functions over the local devices, state replicated
    local_calls = config.batch_size // config.prior_batch // len(devices)
    draw = functools.partial(device_sample, config=config, sample_fn=task_sampler(config.model),
                             local_calls=local_calls, axis_name="batch")  # fmt: skip
    # pmap maps at least one argument: the steps' numbers, one copy a device
    sample = jax.pmap(lambda step, micro, split: draw(step, micro, split), axis_name="batch", in_axes=(0, None, None))
    copies = np.ones(len(devices), np.int32)
    steps = {}  # one compiled step per split bucket
    state = jax.tree.map(lambda a: np.stack([a] * len(devices)), init_state(config))  # one copy a device
    for t in range(2):
        split = mesh_step.split(t)  # any host-side draw; TrainStep's, to compare
        bucket = mesh_step.bucket(split)
        if bucket not in steps:
            steps[bucket] = jax.pmap(
                functools.partial(device_step, config=config, bucket=bucket, axis_name="batch"),
                axis_name="batch", in_axes=(0, 0, None, None),
            )  # fmt: skip
        tasks = sample(copies * t, np.int32(0), np.int32(split))
        state, metrics = steps[bucket](state, (tasks,), np.int32(split), np.float32(learning_rate(config, t)))
        mesh_state, mesh_metrics = mesh_step(mesh_state, t)
        np.testing.assert_allclose(metrics["loss"][0], mesh_metrics["loss"], rtol=1e-5)
    first_device = jax.tree.map(lambda a: a[0], state)
    chex.assert_trees_all_close(first_device.params, host_values(mesh_state.params), atol=1e-5, rtol=1e-5)
    assert int(first_device.step) == 2
