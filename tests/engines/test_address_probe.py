"""--address is probed before ray.init: a port where nothing listens, or a server that does not speak
gRPC (HTTP/2), is one line at once; a server that answers with an HTTP/2 SETTINGS frame passes."""
import socket
import threading

import pytest

from resformer_deploy.engines.ray_engine import probe_address
from resformer_deploy.errors import DeployError


def _server(reply):
    """A loopback TCP server that answers each connection with ``reply`` bytes (None: says nothing)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                conn.recv(64)
                if reply is not None:
                    conn.sendall(reply)
                else:
                    conn.recv(64)  # silent until the client gives up

    threading.Thread(target=serve, daemon=True).start()
    return srv


def test_nothing_listening_is_refused():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # the port is free: connection refused
    with pytest.raises(DeployError) as e:
        probe_address(f"127.0.0.1:{port}")
    assert str(e.value) == (f"--address 127.0.0.1:{port}: cannot join the Ray cluster: nothing answers at "
                            f"127.0.0.1:{port} (Connection refused)")


@pytest.mark.parametrize("reply", [b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", b"SSH-2.0-x\r\n", None])
def test_a_server_that_is_no_grpc_is_refused(reply):
    srv = _server(reply)
    port = srv.getsockname()[1]
    try:
        with pytest.raises(DeployError) as e:
            probe_address(f"127.0.0.1:{port}")
    finally:
        srv.close()
    assert str(e.value) == (f"--address 127.0.0.1:{port}: cannot join the Ray cluster: 127.0.0.1:{port} answers "
                            f"but does not speak gRPC (HTTP/2), so it is no Ray GCS or Ray Client server; check the "
                            f"host and port")


def test_a_server_answering_with_http2_settings_passes():
    """A server's first HTTP/2 frame is SETTINGS (RFC 9113 section 3.4). The reply here is the one a
    real Ray 2.60 GCS (`ray start --head`) sent to the same preface on this machine, 2026-12-07."""
    settings = bytes.fromhex("000018040000000000000400400000000500400000000600004000fe0300000001")
    srv = _server(settings)
    port = srv.getsockname()[1]
    try:
        assert probe_address(f"127.0.0.1:{port}") is None
        assert probe_address(f"ray://127.0.0.1:{port}") is None
    finally:
        srv.close()
