"""
Flows a user of the Docker SDK for Python (docker 7.x) runs, against the daemon
named by DOCKER_HOST. Each flow is a function; the script runs the ones named on
the command line (all by default) and prints one JSON line per flow:
{"flow": name, "ok": bool, "error": str}. Exit code 0 when all passed.
"""
import io
import json
import sys
import tarfile
import time
import traceback

import docker
import docker.utils.socket
from docker.api.client import APIClient
from docker.errors import APIError, ImageNotFound, NotFound


class BufferedStream:
    """An upgraded (exec or attach) response read through http.client's buffered reader.

    The SDK reads such a stream from the raw socket under that reader, so output that
    came in the same read as the 101 headers is lost (docker/docker-py#3332, open): a
    short exec's whole output, when a busy machine lets the exec finish before Python
    parses the headers. Seen here as an empty exec_run on a loaded machine. The
    daemon's bytes are all read; nothing it sends is assumed or skipped.
    """

    def __init__(self, response):
        self.fp = response.raw._fp.fp
        self._sock = self.fp.raw._sock

    def fileno(self):
        return self._sock.fileno()


_sdk_read = docker.utils.socket.read
docker.utils.socket.read = lambda sock, n=4096: sock.fp.read1(n) if isinstance(sock, BufferedStream) else _sdk_read(sock, n)
_sdk_read_from_socket = APIClient._read_from_socket


def _read_from_socket(self, response, *args, **kwargs):
    self._raise_for_status(response)
    self._get_raw_response_socket = BufferedStream  # for this call only: attach_socket keeps the real one
    try:
        return _sdk_read_from_socket(self, response, *args, **kwargs)
    finally:
        del self._get_raw_response_socket


APIClient._read_from_socket = _read_from_socket

client = docker.from_env(timeout=120)
api = client.api
IMAGE = "busybox:latest"
FLOWS = {}


def flow(fn):
    FLOWS[fn.__name__] = fn
    return fn


def cleanup(*containers):
    for c in containers:
        try:
            c.remove(force=True, v=True)
        except Exception:
            pass


def wait_for(what, fn, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        v = fn()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError("timed out waiting for " + what)


@flow
def run_and_logs():
    out = client.containers.run(IMAGE, ["sh", "-c", "echo out; echo err >&2"], remove=True, stderr=True)
    assert out == b"out\nerr\n", out
    c = client.containers.run(IMAGE, ["sh", "-c", "exit 3"], detach=True)
    try:
        assert c.wait()["StatusCode"] == 3
    finally:
        cleanup(c)


@flow
def create_options():
    """GroupAdd, Init, StopTimeout, MacAddress, PidMode/UtsMode=host refused or honoured, hostname, labels."""
    # stop_timeout is only in the low-level API.
    hc = api.create_host_config(group_add=["1234"], init=True)
    cid = api.create_container(IMAGE, ["sh", "-c", "id -G; sleep 300"], host_config=hc, stop_timeout=4,
                               mac_address="02:42:ac:11:00:99", hostname="sdkhost", labels={"sdk": "yes"}, user="0:0")["Id"]
    c = client.containers.get(cid)
    try:
        attrs = api.inspect_container(c.id)
        assert attrs["HostConfig"]["GroupAdd"] == ["1234"], attrs["HostConfig"].get("GroupAdd")
        assert attrs["HostConfig"]["Init"] is True, attrs["HostConfig"].get("Init")
        assert attrs["Config"]["StopTimeout"] == 4, attrs["Config"].get("StopTimeout")
        assert attrs["Config"]["Labels"]["sdk"] == "yes"
        c.start()
        wait_for("output", lambda: c.logs())
        groups = c.logs().split()
        assert b"1234" in groups, groups
        mac = c.exec_run(["cat", "/sys/class/net/eth0/address"]).output.strip()
        assert mac == b"02:42:ac:11:00:99", mac
        assert c.exec_run(["hostname"]).output.strip() == b"sdkhost"
    finally:
        cleanup(c)


@flow
def volumes_from_and_links():
    src = client.containers.run(IMAGE, ["sh", "-c", "echo shared > /data/f; sleep 300"], detach=True, volumes=["/data"], name="sdk-src")
    try:
        wait_for("the file", lambda: src.exec_run(["cat", "/data/f"]).exit_code == 0)
        out = client.containers.run(IMAGE, ["cat", "/data/f"], volumes_from=["sdk-src"], remove=True)
        assert out == b"shared\n", out
        ro = client.containers.run(IMAGE, ["sh", "-c", "echo x > /data/g || echo refused"], volumes_from=["sdk-src:ro"], remove=True)
        assert ro.strip().endswith(b"refused"), ro
        # A legacy link: the alias names the linked container's address (default bridge).
        out = client.containers.run(IMAGE, ["sh", "-c", "grep -w alias /etc/hosts; ping -c1 -W5 alias >/dev/null && echo reached"],
                                    links={"sdk-src": "alias"}, remove=True)
        assert out.strip().endswith(b"reached"), out
    finally:
        cleanup(src)


@flow
def pid_and_uts_modes():
    # No host PID/UTS namespace exists for a VM: a clear refusal, as for other impossible options.
    for kw in ({"pid_mode": "host"}, {"uts_mode": "host"}):
        try:
            c = client.containers.create(IMAGE, ["true"], **kw)
            cleanup(c)
            raise AssertionError("created with %r" % kw)
        except APIError as e:
            assert e.status_code == 400 and "host" in str(e.explanation), e
    a = client.containers.run(IMAGE, ["sleep", "300"], detach=True, init=True)
    try:
        b = client.containers.run(IMAGE, ["sh", "-c", "ps -o comm | grep -c sleep"], pid_mode="container:" + a.id, remove=True, stderr=True)
        assert b.strip() == b"1", b
    except APIError as e:
        assert e.status_code == 400, e
    finally:
        cleanup(a)


@flow
def unknown_log_driver_refused():
    try:
        c = client.containers.create(IMAGE, ["true"], log_config=docker.types.LogConfig(type="no-such-driver"))
        cleanup(c)
        raise AssertionError("created with an unknown log driver")
    except APIError as e:
        assert e.status_code == 400 and "no-such-driver" in str(e.explanation), e


@flow
def exec_tty_and_stream():
    c = client.containers.run(IMAGE, ["sleep", "300"], detach=True, init=True)
    try:
        r = c.exec_run(["sh", "-c", "tty; echo done"], tty=True)
        assert r.exit_code == 0 and b"/dev/pts/" in r.output and b"done\r\n" in r.output, r
        r = c.exec_run(["sh", "-c", "echo a; sleep 0.2; echo b"], stream=True)
        assert b"".join(r.output) == b"a\nb\n"
        r = c.exec_run(["sh", "-c", "echo t; sleep 0.2; echo u"], stream=True, tty=True)
        assert b"".join(r.output).replace(b"\r", b"") == b"t\nu\n"
        r = c.exec_run(["sh", "-c", "echo o; echo e >&2"], demux=True)
        assert r.output == (b"o\n", b"e\n"), r.output
        r = c.exec_run(["sh", "-c", "exit 7"])
        assert r.exit_code == 7
    finally:
        cleanup(c)


@flow
def attach_detach_keys():
    c = client.containers.create(IMAGE, ["cat"], stdin_open=True, tty=True, detach=True)
    try:
        c.start()
        sock = api.attach_socket(c.id, params={"stdin": 1, "stdout": 1, "stream": 1, "detachKeys": "ctrl-x"})
        s = sock._sock
        s.settimeout(10)
        s.sendall(b"hello\n")
        got = b""
        while b"hello" not in got:
            got += s.recv(4096)
        s.sendall(b"\x18")  # ctrl-x: detach
        s.settimeout(10)
        rest = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            rest += chunk
        sock.close()
        c.reload()
        assert c.status == "running", c.status
    finally:
        cleanup(c)


@flow
def stats_once():
    c = client.containers.run(IMAGE, ["sleep", "300"], detach=True, init=True)
    try:
        s = c.stats(stream=False)
        assert s["memory_stats"].get("usage", 0) > 0, s["memory_stats"]
        assert "cpu_stats" in s and "precpu_stats" in s
        s = c.stats(stream=False, one_shot=True)
        assert "memory_stats" in s
    finally:
        cleanup(c)


@flow
def prune():
    c = client.containers.run(IMAGE, ["true"], detach=True, labels={"sdkprune": "1"})
    c.wait()
    res = client.containers.prune(filters={"label": "sdkprune=1"})
    assert c.id in (res.get("ContainersDeleted") or []), res
    img = client.images.get(IMAGE)
    img.tag("sdk-prune", "x")
    client.images.remove("sdk-prune:x")
    res = client.images.prune(filters={"dangling": True})
    assert "SpaceReclaimed" in res, res
    res = client.networks.prune()
    assert "NetworksDeleted" in res, res
    res = client.volumes.prune()
    assert "SpaceReclaimed" in res, res


@flow
def update_container():
    c = client.containers.run(IMAGE, ["sleep", "300"], detach=True, init=True)
    try:
        c.update(restart_policy={"Name": "on-failure", "MaximumRetryCount": 2})
        c.reload()
        assert c.attrs["HostConfig"]["RestartPolicy"]["Name"] == "on-failure"
    finally:
        cleanup(c)


@flow
def commit_with_changes_and_diff():
    c = client.containers.run(IMAGE, ["sh", "-c", "mkdir /made && echo x > /made/f && rm /bin/true"], detach=True)
    try:
        c.wait()
        changes = {(d["Path"], d["Kind"]) for d in c.diff()}
        assert ("/made", 1) in changes and ("/made/f", 1) in changes and ("/bin/true", 2) in changes, changes
        img = c.commit("sdk-commit", "v1", changes=["ENV SDK=1", 'CMD ["cat", "/made/f"]'], message="from sdk", author="me")
        assert "SDK=1" in img.attrs["Config"]["Env"], img.attrs["Config"]["Env"]
        assert img.attrs["Config"]["Cmd"] == ["cat", "/made/f"]
        assert img.attrs["Author"] == "me" and img.attrs["Comment"] == "from sdk"
        assert client.containers.run("sdk-commit:v1", remove=True) == b"x\n"
        client.images.remove("sdk-commit:v1")
    finally:
        cleanup(c)


@flow
def import_and_load_round_trip():
    c = client.containers.run(IMAGE, ["sh", "-c", "echo exported > /mark"], detach=True)
    try:
        c.wait()
        data = b"".join(c.export())
        img = client.images.get(api.import_image_from_data(data, repository="sdk-import", tag="v1") and "sdk-import:v1")
        assert client.containers.run("sdk-import:v1", ["cat", "/mark"], remove=True) == b"exported\n"
        saved = b"".join(img.save(named=True))
        client.images.remove("sdk-import:v1", force=True)
        loaded = client.images.load(saved)
        assert any("sdk-import:v1" in i.tags for i in loaded), [i.tags for i in loaded]
        client.images.remove("sdk-import:v1", force=True)
    finally:
        cleanup(c)


@flow
def put_get_archive():
    c = client.containers.run(IMAGE, ["sleep", "300"], detach=True, init=True)
    try:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            info = tarfile.TarInfo("hello.txt")
            body = b"from the sdk\n"
            info.size = len(body)
            t.addfile(info, io.BytesIO(body))
        assert c.put_archive("/tmp", buf.getvalue())
        stream, stat = c.get_archive("/tmp/hello.txt")
        assert stat["name"] == "hello.txt" and stat["size"] == 13, stat
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as t:
            assert t.extractfile("hello.txt").read() == b"from the sdk\n"
    finally:
        cleanup(c)


@flow
def events_and_top():
    c = client.containers.run(IMAGE, ["sleep", "300"], detach=True, init=True)
    try:
        top = c.top()
        assert any("sleep" in " ".join(p) for p in top["Processes"]), top
        c.pause()
        c.reload()
        assert c.status == "paused"
        c.unpause()
        c.rename("sdk-renamed")
        c.reload()
        assert c.name == "sdk-renamed"
        c.kill(signal="SIGKILL")
        assert c.wait()["StatusCode"] == 137
    finally:
        cleanup(c)


@flow
def logs_follow_tail_timestamps():
    c = client.containers.run(IMAGE, ["sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.3; done; echo err >&2"], detach=True)
    try:
        followed = b"".join(c.logs(stream=True, follow=True))
        assert followed == b"line1\nline2\nline3\nerr\n", followed
        assert c.logs(tail=1) == b"err\n"
        assert c.logs(stderr=False) == b"line1\nline2\nline3\n"
        stamped = c.logs(timestamps=True).decode().splitlines()
        assert len(stamped) == 4 and stamped[0].endswith(" line1") and "T" in stamped[0].split(" ")[0], stamped
        assert c.logs(since=int(time.time()) + 60) == b""
    finally:
        cleanup(c)


@flow
def list_with_filters():
    a = client.containers.run(IMAGE, ["sleep", "300"], detach=True, init=True, labels={"sdkls": "a"}, name="sdk-ls-a")
    b = client.containers.run(IMAGE, ["true"], detach=True, labels={"sdkls": "b"}, name="sdk-ls-b")
    try:
        b.wait()
        names = lambda **kw: sorted(c.name for c in client.containers.list(**kw))
        assert names(filters={"label": "sdkls"}) == ["sdk-ls-a"], names(filters={"label": "sdkls"})
        assert names(all=True, filters={"label": "sdkls"}) == ["sdk-ls-a", "sdk-ls-b"]
        assert names(all=True, filters={"label": "sdkls=b"}) == ["sdk-ls-b"]
        assert names(all=True, filters={"status": "exited", "label": "sdkls"}) == ["sdk-ls-b"]
        assert names(filters={"name": "sdk-ls-a"}) == ["sdk-ls-a"]
        assert names(all=True, filters={"ancestor": "busybox", "label": "sdkls"}) == ["sdk-ls-a", "sdk-ls-b"]
        assert client.containers.get("sdk-ls-a").id == a.id
        try:
            client.containers.get("sdk-no-such")
            raise AssertionError("found a container that does not exist")
        except NotFound:
            pass
    finally:
        cleanup(a, b)


@flow
def networks_and_aliases():
    net = client.networks.create("sdk-net", labels={"sdk": "1"})
    try:
        srv = client.containers.run(IMAGE, ["sh", "-c", "echo hi-from-srv > /www; exec httpd -f -p 80 -h /"], detach=True,
                                    network="sdk-net", name="sdk-srv")
        try:
            # Tries for 30 s, not 5 times a second apart: on a busy machine the server may take longer to answer.
            out = client.containers.run(IMAGE, ["sh", "-c", "i=0; while [ $i -lt 150 ]; do wget -qO- http://sdk-srv/www && exit 0; i=$((i+1)); sleep 0.2; done; exit 1"],
                                        network="sdk-net", remove=True)
            assert out == b"hi-from-srv\n", out
            net.reload()
            assert srv.id in [c.id for c in net.containers], net.attrs.get("Containers")
            assert [n.name for n in client.networks.list(filters={"label": "sdk=1"})] == ["sdk-net"]
        finally:
            cleanup(srv)
    finally:
        net.remove()


@flow
def volumes_lifecycle():
    v = client.volumes.create("sdk-vol", labels={"sdk": "1"})
    try:
        assert v.attrs["Labels"] == {"sdk": "1"} and v.attrs["Driver"] == "local"
        client.containers.run(IMAGE, ["sh", "-c", "echo kept > /v/f"], volumes={"sdk-vol": {"bind": "/v", "mode": "rw"}}, remove=True)
        out = client.containers.run(IMAGE, ["cat", "/v/f"], volumes={"sdk-vol": {"bind": "/v", "mode": "ro"}}, remove=True)
        assert out == b"kept\n", out
        assert [x.name for x in client.volumes.list(filters={"label": "sdk=1"})] == ["sdk-vol"]
    finally:
        v.remove(force=True)
    try:
        client.volumes.get("sdk-vol")
        raise AssertionError("the volume is still there")
    except NotFound:
        pass


@flow
def exec_env_workdir_user():
    c = client.containers.run(IMAGE, ["sleep", "300"], detach=True, init=True)
    try:
        r = c.exec_run(["sh", "-c", "echo $GREETING; pwd; id -u"], environment={"GREETING": "hey"}, workdir="/tmp", user="65534")
        assert r.exit_code == 0 and r.output == b"hey\n/tmp\n65534\n", r
        r = c.exec_run(["no-such-binary"])
        assert r.exit_code in (126, 127), r
    finally:
        cleanup(c)


@flow
def restart_policy_on_failure():
    c = client.containers.run(IMAGE, ["sh", "-c", "exit 1"], detach=True, restart_policy={"Name": "on-failure", "MaximumRetryCount": 2})
    try:
        wait_for("two restarts", lambda: (c.reload() or c.attrs["RestartCount"] >= 2) and c.status == "exited", timeout=60)
        assert c.attrs["RestartCount"] == 2 and c.attrs["State"]["ExitCode"] == 1, c.attrs["State"]
    finally:
        cleanup(c)


@flow
def image_history_and_tags():
    img = client.images.get(IMAGE)
    assert img.history() and "Created" in img.history()[0]
    assert img.tag("sdk-tagged", "t1")
    assert "sdk-tagged:t1" in client.images.get("sdk-tagged:t1").tags
    assert any("sdk-tagged:t1" in i.tags for i in client.images.list(name="sdk-tagged"))
    client.images.remove("sdk-tagged:t1")
    try:
        client.images.get("sdk-tagged:t1")
        raise AssertionError("the tag is still there")
    except ImageNotFound:
        pass


def main():
    names = sys.argv[1:] or list(FLOWS)
    failed = 0
    for name in names:
        t0 = time.time()
        try:
            FLOWS[name]()
            print(json.dumps({"flow": name, "ok": True, "secs": round(time.time() - t0, 1)}), flush=True)
        except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the run
            failed += 1
            detail = "".join(traceback.format_exception_only(type(e), e)).strip()
            tb = traceback.format_exc().strip().splitlines()[-6:]
            print(json.dumps({"flow": name, "ok": False, "error": detail, "where": tb}), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
