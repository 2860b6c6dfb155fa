"""`make run` (`manage.py run`) says which port is taken, and what to change, before it starts
anything: a web port another program holds used to bring a "Pairwise is running" banner for that
program, and a taken score server port a traceback, before every process was stopped again."""

import socket
from collections.abc import Iterator

import pytest
from django.core.management import CommandError, call_command

from tests.test_embedded_default import _free_port


class Started(Exception):
    """Raised instead of starting a process: the checks let `run` go on."""


@pytest.fixture(autouse=True)
def no_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    """`run` starts nothing here, and leaves this process's signal handlers as they were."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise Started

    monkeypatch.setattr("annotation.management.commands.run.subprocess.Popen", refuse)
    monkeypatch.setattr("annotation.management.commands.run.signal.signal", lambda *args: None)


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_a_taken_web_port_is_named_with_the_way_to_choose_another(taken_port, settings):
    settings.SCORE_SERVER_URL = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(CommandError) as raised:
        call_command("run", "--port", str(taken_port))
    message = str(raised.value)
    assert f"The web server cannot listen on 127.0.0.1:{taken_port}" in message
    assert "in use" in message
    assert f"make run PORT={taken_port + 1}" in message
    assert f"manage.py run --port {taken_port + 1}" in message


def test_a_taken_score_server_port_points_to_score_server_url(taken_port, settings):
    settings.SCORE_SERVER_URL = f"http://127.0.0.1:{taken_port}"
    with pytest.raises(CommandError) as raised:
        call_command("run", "--port", str(_free_port()))
    message = str(raised.value)
    assert f"The score server cannot listen on 127.0.0.1:{taken_port}" in message
    advice = f"set SCORE_SERVER_URL to a free port (e.g. http://127.0.0.1:{taken_port + 1})"
    assert advice in message


def test_the_web_port_may_not_be_the_score_servers(settings):
    port = _free_port()
    settings.SCORE_SERVER_URL = f"http://127.0.0.1:{port}"
    with pytest.raises(CommandError, match=f"would share port {port}"):
        call_command("run", "--port", str(port))


def test_free_ports_let_run_start_its_processes(settings):
    settings.SCORE_SERVER_URL = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(Started):
        call_command("run", "--port", str(_free_port()))


def test_a_port_the_last_run_left_in_time_wait_counts_as_free(settings):
    """A server that just stopped leaves its accepted connections in TIME_WAIT; both servers
    bind with SO_REUSEADDR, so the check must not call that port taken."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server side closes first: its end goes to TIME_WAIT
        client.close()
    settings.SCORE_SERVER_URL = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(Started):
        call_command("run", "--port", str(port))


def test_check_alone_starts_nothing_and_still_reports_a_taken_port(taken_port, settings):
    """`make run` calls `run --check` before its migrations and demo, to fail at once."""
    settings.SCORE_SERVER_URL = f"http://127.0.0.1:{_free_port()}"
    call_command("run", "--port", str(_free_port()), "--check")  # Popen would raise Started
    with pytest.raises(CommandError, match=f"cannot listen on 127.0.0.1:{taken_port}"):
        call_command("run", "--port", str(taken_port), "--check")


def test_a_score_server_url_on_another_machine_is_named(settings):
    """`make run` starts the score server here: a SCORE_SERVER_URL that names another machine
    (192.0.2.1 is reserved for documentation, never this host) cannot be listened on."""
    settings.SCORE_SERVER_URL = "http://192.0.2.1:8765"
    with pytest.raises(CommandError) as raised:
        call_command("run", "--port", str(_free_port()), "--check")
    message = str(raised.value)
    assert "The score server cannot listen on 192.0.2.1:8765" in message
    assert "Stop what holds" not in message  # no program to stop: the address is not here
    advice = "Set SCORE_SERVER_URL to an address of this machine (e.g. http://127.0.0.1:8765)."
    assert message.endswith(advice)
