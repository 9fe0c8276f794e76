"""describe_topology: nodes and processes from the torchrun environment, the link, the GPU interconnect.

Under torchrun on this machine the summary reads "CPU, gloo, loopback (1 node, 2 processes)"; the
2-process runs in test_compression.py check that line.
"""

from __future__ import annotations

import datetime

import pytest
import torch.distributed as dist

from deepdive.engine import topology
from deepdive.engine.topology import describe_topology

ENV = ("WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_WORLD_SIZE", "NNODES", "MASTER_ADDR", "RANK", "LOCAL_RANK")


@pytest.fixture
def clean_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_plain_python_is_a_single_process(clean_env):
    topo = describe_topology(device="cpu")
    assert (topo["nodes"], topo["processes"], topo["backend"], topo["link"]) == (1, 1, None, "single process")
    assert topo["summary"] == "CPU, no process group, single process (1 node, 1 process)"


@pytest.mark.parametrize(
    "env, nodes, local",
    [
        ({"GROUP_WORLD_SIZE": "2", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4"}, 2, 4),
        ({"NNODES": "4", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "2"}, 4, 2),
        ({"WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4"}, 2, 4),
    ],
)
def test_nodes_and_processes_from_the_torchrun_environment(clean_env, env, nodes, local):
    for name, value in env.items():
        clean_env.setenv(name, value)
    clean_env.setenv("MASTER_ADDR", "10.1.2.3")
    topo = describe_topology(device="cpu")
    assert (topo["nodes"], topo["processes"], topo["local_processes"]) == (nodes, 8, local)
    assert topo["link"] == "network" and topo["master_addr"] == "10.1.2.3"
    assert topo["summary"] == f"CPU, no process group, network ({nodes} nodes, 8 processes)"


@pytest.mark.parametrize("addr", ["127.0.0.1", "localhost", "::1"])
def test_loopback_master_means_one_node(clean_env, addr):
    clean_env.setenv("WORLD_SIZE", "2")
    clean_env.setenv("MASTER_ADDR", addr)
    topo = describe_topology(device="cpu")
    assert (topo["nodes"], topo["local_processes"], topo["link"]) == (1, 2, "loopback")
    assert topo["summary"] == "CPU, no process group, loopback (1 node, 2 processes)"


def test_unknown_node_count_is_shown_as_unknown(clean_env):
    clean_env.setenv("WORLD_SIZE", "2")
    clean_env.setenv("MASTER_ADDR", "192.0.2.1")
    topo = describe_topology(device="cpu")
    assert topo["nodes"] is None and topo["summary"] == "CPU, no process group, network (? nodes, 2 processes)"


def test_backend_comes_from_the_process_group(clean_env):
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1,
                            timeout=datetime.timedelta(seconds=60))
    try:
        topo = describe_topology()
        assert (topo["backend"], topo["device"]) == ("gloo", "cpu")
        assert topo["summary"] == "CPU, gloo, single process (1 node, 1 process)"
    finally:
        dist.barrier()
        dist.destroy_process_group()


def test_gpu_interconnect_in_the_summary(clean_env):
    clean_env.setenv("WORLD_SIZE", "8")
    clean_env.setenv("LOCAL_WORLD_SIZE", "8")
    clean_env.setenv("GROUP_WORLD_SIZE", "1")
    nvlink = [{"index": i, "name": "NVIDIA H200", "nvlink_active_links": 18, "pcie_gen": 5, "pcie_width": 16}
              for i in range(8)]
    pcie = [{"index": i, "name": "NVIDIA L4", "nvlink_active_links": 0, "pcie_gen": 4, "pcie_width": 16}
            for i in range(8)]
    clean_env.setattr(topology, "_nvml_gpus", lambda: (nvlink, None))
    assert describe_topology(device="cuda")["summary"] == "NVIDIA H200, no process group, NVLink (1 node, 8 processes)"
    clean_env.setattr(topology, "_nvml_gpus", lambda: (pcie, None))
    topo = describe_topology(device="cuda")
    assert topo["interconnect"] == "PCIe Gen4 x16"
    assert topo["summary"] == "NVIDIA L4, no process group, PCIe Gen4 x16 (1 node, 8 processes)"
    clean_env.setenv("GROUP_WORLD_SIZE", "2")
    clean_env.setenv("WORLD_SIZE", "16")
    assert describe_topology(device="cuda")["link"] == "PCIe Gen4 x16 within nodes, network between nodes"


def test_gpus_or_the_exact_reason_there_are_none(clean_env):
    topo = describe_topology(device="cpu")
    if topo["gpus"]:
        assert topo["interconnect"] and topo["interconnect_reason"] is None
        assert all("nvlink_active_links" in g and g["name"] for g in topo["gpus"])
    else:
        assert topo["interconnect"] is None and topo["interconnect_reason"]
    # nvidia-smi topo -m: its matrix, or why there is none.
    assert bool(topo["nvidia_smi_topo"]) != bool(topo["nvidia_smi_reason"])
