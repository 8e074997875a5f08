"""The harness: plugin registration, the fleet simulator."""

from importlib.metadata import entry_points

import pytest

import tessera


def test_plugin_is_registered_through_the_entry_point():
    eps = entry_points(group="pytest11")
    assert any(ep.name == "tessera" and ep.value == "tessera.pytest_plugin" for ep in eps)


def test_fixtures_give_a_working_server(tessera_server, tessera_admin, tessera_device_factory):
    assert tessera_server.running
    _, pt = tessera_admin.create_pt("fixture", approval="automatic")
    assert tessera_device_factory(pt, device_id="fx-1").ensure_registered(10).device_id == "fx-1"


def test_fleet_simulator(tessera_server):
    summary = tessera.simulate_fleet(tessera_server, 60, threads=8, refreshes=2)
    assert summary.errors == {}
    assert (summary.provisioned, summary.refreshed) == (60, 120)
    assert len({r.registration_id for r in summary.registrations}) == 60
    assert all(r.generation == 3 for r in summary.registrations)
    assert summary.provision_p50_ms <= summary.provision_p99_ms
    assert summary.as_dict()["provisions_per_second"] > 0


def test_fleet_simulator_counts_errors(tessera_server, tessera_admin):
    _, pt = tessera_admin.create_pt("tiny", kind="fleet", approval="automatic",
                                    max_registrations=3)
    summary = tessera.simulate_fleet(tessera_server, 5, pt=pt, threads=5, refreshes=0)
    assert summary.provisioned == 3
    assert summary.errors == {"RegistrationCapReached": 2}


def test_version_matches_the_crate():
    import pathlib
    import re

    cargo = (pathlib.Path(__file__).resolve().parents[3] / "Cargo.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', cargo, re.M).group(1)
    assert tessera.__version__ == version


def test_readme_example_runs(tessera_admin, tessera_device_factory):
    """The snippet in the README's "For test engineers" section is a working test."""
    import pathlib
    import re

    readme = (pathlib.Path(__file__).resolve().parents[3] / "README.md").read_text()
    section = readme.split("## For test engineers (Python)", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    namespace["test_technician_approves_with_code"](tessera_admin, tessera_device_factory)


@pytest.mark.tessera(manual_clock=True, engine={"operation_ttl_secs": 60})
def test_the_marker_sets_the_servers_settings(tessera_server, tessera_admin):
    _, pt = tessera_admin.create_pt("marked")
    tessera_server.advance_clock(1)  # only a manual clock can be advanced
    with tessera_server.device(pt, device_id="marked-1", wait_timeout=0.2) as device:
        with pytest.raises(tessera.PendingApproval):
            device.ensure_registered(0.5)
        op_id = device.pending_operation_id
        tessera_server.advance_clock(61)  # past the marker's 60 s operation TTL
        assert tessera_admin.show_operation(op_id)["state"] == "expired"


def test_a_session_server_is_shared(tessera_shared_server):
    with tessera_shared_server.admin() as admin:
        assert admin.status()["engine"]["current_key_epoch"] >= 1
