"""Starting and stopping servers leaves no process, no thread and no port behind."""

import os
import pathlib
import socket

import tessera


def tasks() -> int:
    return len(os.listdir("/proc/self/task"))


def children() -> list:
    out = []
    for t in pathlib.Path("/proc/self/task").iterdir():
        try:
            out += (t / "children").read_text().split()
        except FileNotFoundError:
            pass
    return out


def port_is_free(port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def test_start_stop_leaves_nothing_behind():
    # Warm up once so lazily started process-wide pieces (the client runtime) are counted in
    # the baseline.
    with tessera.Server() as warm, warm.admin() as admin:
        admin.status()
    baseline = tasks()
    for _ in range(3):
        server = tessera.Server()
        ports = (server.device_port, server.admin_port)
        data = pathlib.Path(server.data_dir)
        assert not port_is_free(ports[0]) and not port_is_free(ports[1])
        with server.admin() as admin:
            assert admin.status()["open_connections"] >= 1
        server.stop()
        assert not server.running
        assert all(port_is_free(p) for p in ports)
        assert not data.exists()  # the temporary data directory is removed
        server.stop()  # idempotent
    assert tasks() == baseline
    assert children() == []


def test_data_dir_given_by_the_caller_is_kept(tmp_path):
    with tessera.Server(tmp_path / "keep") as server:
        token = server.admin_token
    assert (tmp_path / "keep" / "admin.token").exists()
    # The same data directory starts again; its first admin token was already issued.
    try:
        tessera.Server(tmp_path / "keep")
    except tessera.ConfigError as e:
        assert "admin tokens" in str(e)
    else:
        raise AssertionError("a second first admin token must not be issued")
    assert token.startswith("tsat_") and token not in repr(server)
