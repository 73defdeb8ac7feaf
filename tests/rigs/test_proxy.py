"""The soak's TCP fault proxy: each mode does what it says, against an echo server and a real
Mosquitto, and a seed replays its decisions."""

import socket
import threading
import time

import pytest
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from kiosk.rigs.proxy import FaultProxy
from kiosk.telemetry import topics
from tests.fixtures.broker import wait_until


@pytest.fixture
def echo_port():
    """A plain TCP echo server on 127.0.0.1, a thread per connection."""
    server = socket.create_server(("127.0.0.1", 0))
    conns = []

    def serve(conn):
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                pass

    def accept():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conns.append(conn)
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for conn in conns:
        conn.close()


def connect(proxy, timeout=5.0):
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        more = sock.recv(n - len(data))
        if not more:
            raise ConnectionError(f"closed after {len(data)} of {n} bytes")
        data += more
    return data


def echo(sock, payload):
    sock.sendall(payload)
    return recv_exactly(sock, len(payload))


def test_proxy_pass_forwards_both_ways_and_counts_bytes(echo_port):
    with FaultProxy(echo_port, seed=1) as proxy, connect(proxy) as sock:
        assert echo(sock, b"hello kiosk") == b"hello kiosk"
        wait_until(lambda: proxy.stats["bytes_down"] == 11, "the echo counted")
        assert proxy.stats == {"connections": 1, "open": 1, "bytes_up": 11,
                                "bytes_down": 11, "resets": 0, "held_chunks": 0}


def test_proxy_passes_a_half_close_on_and_ends_the_pair(echo_port):
    with FaultProxy(echo_port, seed=1) as proxy, connect(proxy) as sock:
        sock.sendall(b"last words")
        sock.shutdown(socket.SHUT_WR)
        assert recv_exactly(sock, 10) == b"last words"
        assert sock.recv(10) == b""  # the echo server saw the end and closed
        wait_until(lambda: proxy.stats["open"] == 0, "the pair ended")


def test_proxy_cut_resets_open_and_new_connections_until_pass(echo_port):
    with FaultProxy(echo_port, seed=1) as proxy:
        sock = connect(proxy)
        assert echo(sock, b"a") == b"a"
        proxy.set_mode("cut")
        with pytest.raises(ConnectionResetError):
            sock.recv(1)
        sock.close()
        with pytest.raises(ConnectionResetError):  # at connect, send or receive: a race
            with connect(proxy) as again:
                again.sendall(b"x")
                again.recv(1)
        proxy.set_mode("pass")
        with connect(proxy) as after:
            assert echo(after, b"back") == b"back"
        assert proxy.stats["resets"] == 2


def test_proxy_stall_holds_every_byte_then_lets_it_flow(echo_port):
    with FaultProxy(echo_port, seed=1) as proxy, connect(proxy) as sock:
        assert echo(sock, b"before") == b"before"
        proxy.set_mode("stall")
        sock.sendall(b"during the stall")
        with connect(proxy) as newcomer:
            newcomer.sendall(b"newcomer")
            sock.settimeout(0.5)
            newcomer.settimeout(0.5)
            with pytest.raises(TimeoutError):
                sock.recv(100)
            with pytest.raises(TimeoutError):
                newcomer.recv(100)
            assert proxy.stats["bytes_up"] == len(b"before")  # nothing reached the server
            proxy.set_mode("pass")
            sock.settimeout(5)
            newcomer.settimeout(5)
            assert recv_exactly(sock, 16) == b"during the stall"
            assert recv_exactly(newcomer, 8) == b"newcomer"
        assert proxy.stats["resets"] == 0


def test_proxy_lossy_holds_chunks_for_a_retransmission_delay_in_order(echo_port):
    with FaultProxy(echo_port, seed=7) as proxy, connect(proxy) as sock:
        proxy.set_mode("lossy", p=1.0, delay_s=(0.3, 0.4), reset_p=0.0)
        started = time.monotonic()
        assert echo(sock, b"one") == b"one"
        took = time.monotonic() - started
        # Held once on the way up and once on the way down, never lost.
        assert 0.6 <= took < 2.0
        assert [d[0] for d in proxy.decisions] == ["hold", "hold"]
        assert all(0.3 <= d[2] <= 0.4 for d in proxy.decisions)
        proxy.set_mode("pass")
        started = time.monotonic()
        assert echo(sock, b"two") == b"two"
        assert time.monotonic() - started < 0.3


def test_proxy_lossy_resets_a_connection_like_a_nat_timeout(echo_port):
    with FaultProxy(echo_port, seed=7) as proxy, connect(proxy) as sock:
        proxy.set_mode("lossy", p=0.0, reset_p=1.0)
        sock.sendall(b"x")
        with pytest.raises(ConnectionResetError):
            sock.recv(1)
        assert proxy.decisions == [("reset", 1)]
        assert proxy.stats["resets"] == 1


def _lossy_run(echo_port, seed):
    with FaultProxy(echo_port, seed=seed) as proxy, connect(proxy) as sock:
        proxy.set_mode("lossy", p=0.3, delay_s=(0.001, 0.01), reset_p=0.0)
        for n in range(40):
            assert echo(sock, b"%d" % n) == b"%d" % n  # one chunk each way at a time
        return proxy.decisions


def test_proxy_lossy_decisions_replay_with_the_same_seed(echo_port):
    first, again, other = (_lossy_run(echo_port, seed) for seed in (11, 11, 12))
    assert first, "p=0.3 over 80 chunks held some"
    assert first == again
    assert first != other


def test_proxy_throttle_limits_each_direction(echo_port):
    with FaultProxy(echo_port, seed=1) as proxy, connect(proxy) as sock:
        proxy.set_mode("throttle", bytes_per_s=20_000)
        payload = bytes(range(256)) * 80  # 20,480 bytes: about a second each way at that rate
        started = time.monotonic()
        assert echo(sock, payload) == payload
        took = time.monotonic() - started
        assert 0.9 <= took < 4.0
        proxy.set_mode("pass")
        started = time.monotonic()
        assert echo(sock, payload) == payload
        assert time.monotonic() - started < 0.5


def test_proxy_refuses_unknown_modes_and_parameters(echo_port):
    with FaultProxy(echo_port, seed=1) as proxy:
        with pytest.raises(ValueError, match="unknown proxy mode"):
            proxy.set_mode("flaky")
        with pytest.raises(ValueError, match="takes no bytes_per_s"):
            proxy.set_mode("lossy", bytes_per_s=3)
        with pytest.raises(ValueError, match="bytes_per_s"):
            proxy.set_mode("throttle", bytes_per_s=0)


def test_proxy_close_ends_connections_and_the_listener(echo_port):
    proxy = FaultProxy(echo_port, seed=1).start()
    sock = connect(proxy)
    assert echo(sock, b"a") == b"a"
    proxy.close()
    with pytest.raises(ConnectionError):
        echo(sock, b"b")
    sock.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()
    assert not proxy._thread.is_alive()


class _Kiosk:
    """A paho MQTT client that counts its connects and disconnects and reconnects by itself."""

    def __init__(self, port, username, password):
        self.connects = self.disconnects = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=username,
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(0.1, 0.2)
        self.client.on_connect = lambda *a: setattr(self, "connects", self.connects + 1)
        self.client.on_disconnect = lambda *a: setattr(self, "disconnects", self.disconnects + 1)
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def test_proxy_cut_disconnects_a_paho_client_that_reconnects_after_pass(broker, mqtt_client):
    password = broker.add_kiosk("k1")
    with FaultProxy(broker.port, seed=3) as proxy:
        kiosk = _Kiosk(proxy.port, "k1", password)
        try:
            wait_until(lambda: kiosk.connects == 1, "the first connect")
            proxy.set_mode("cut")
            wait_until(lambda: kiosk.disconnects >= 1, "the cut noticed")
            wait_until(lambda: proxy.stats["resets"] >= 2, "a reconnect refused while cut")
            assert kiosk.connects == 1
            proxy.set_mode("pass")
            wait_until(lambda: kiosk.connects == 2, "the reconnect after pass")
        finally:
            kiosk.close()


def test_proxy_stall_delivers_nothing_to_mosquitto_then_everything(broker, mqtt_client):
    password = broker.add_kiosk("k1")
    observer = mqtt_client(*broker.collector_credentials)
    observer.subscribe(topics.KIOSK_SUBSCRIPTION)
    visit_topic = topics.kiosk_topic("k1", "visit")
    with FaultProxy(broker.port, seed=3) as proxy:
        kiosk = _Kiosk(proxy.port, "k1", password)
        try:
            wait_until(lambda: kiosk.connects == 1, "the first connect")
            proxy.set_mode("stall")
            for n in range(5):
                kiosk.client.publish(visit_topic, b"v%d" % n, qos=1)
            time.sleep(0.5)  # the window in which nothing may arrive
            assert observer.received(visit_topic) == []
            proxy.set_mode("pass")
            wait_until(lambda: len(observer.received(visit_topic)) == 5, "the held visits")
            assert [m.payload for m in observer.received(visit_topic)] == [
                b"v%d" % n for n in range(5)]
            assert kiosk.disconnects == 0
        finally:
            kiosk.close()
