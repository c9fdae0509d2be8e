"""`dev up` right after `dev down`: the broker's port may still hold connections in TIME_WAIT."""

from __future__ import annotations

import socket

from drippulse.devstack import free_port, port_bindable


def test_a_port_whose_server_closed_first_is_not_bindable_until_time_wait_ends() -> None:
    """Tansu binds without SO_REUSEADDR: the check must refuse exactly what Tansu's bind refuses."""
    port = free_port()
    assert port_bindable(port)
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen()
        with socket.create_connection(("127.0.0.1", port)) as client:
            served, _ = listener.accept()
            served.close()  # the server side closes first, as a stopped broker's does
            client.recv(1)
    assert not port_bindable(port)
