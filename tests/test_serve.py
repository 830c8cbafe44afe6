"""``nextgpt serve``: the OpenAI-compatible server on 127.0.0.1, driven by the official ``openai``
client. One in-process server over the session's tiny model (image, audio, video) serves most
tests; one test starts the real command as the README shows it, with every installed plugin (the 3D
example too), and sends it the README's curl request and openai-client script."""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'nextgpt-core[serve]'")
openai = pytest.importorskip("openai", reason="the serve extra is not installed: pip install 'nextgpt-core[serve]'")

KEY = "test-key"
ROOT = Path(__file__).resolve().parents[1]


class GuardedModel:
    """The tiny model as the server sees it, watching how it is used: how many ``generate``
    calls run at once (``peak``), a gate that holds calls back, and a switch that makes the
    next call fail as an unforeseen bug would."""

    def __init__(self, model) -> None:
        self._model = model
        self.running = 0
        self.peak = 0
        self.gate = threading.Event()
        self.gate.set()
        self.fail_next = False
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self._model, name)

    def _enter(self) -> None:
        self.gate.wait(timeout=30)
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        if self.fail_next:
            self.fail_next = False
            self._leave()
            raise RuntimeError("simulated bug")

    def _leave(self) -> None:
        with self._lock:
            self.running -= 1

    def generate(self, *args, stream=False, **kwargs):
        if not stream:
            self._enter()
            try:
                return self._model.generate(*args, **kwargs)
            finally:
                self._leave()

        def events():
            self._enter()
            try:
                yield from self._model.generate(*args, stream=True, **kwargs)
            finally:
                self._leave()

        return events()


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    from nextgpt.serving.app import BackgroundServer, create_app
    from nextgpt.serving.settings import ServeSettings

    work = tmp_path_factory.mktemp("serve_work")
    settings = ServeSettings(
        model_name="tiny",
        api_key=KEY,
        max_request_bytes=4 * 2**20,
        max_media_bytes=2**20,
        max_pixels=128 * 128,
        max_seconds=3.0,
        queue_size=1,
        work_dir=work,
    )
    guarded = GuardedModel(tiny_model)
    with BackgroundServer(create_app(guarded, settings)) as url:
        yield {"url": url, "model": guarded, "work": work}


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server['url']}/v1", api_key=KEY, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A small file of each modality, written by independent writers."""
    from media_fixtures import write_test_audio, write_test_image, write_test_video

    folder = tmp_path_factory.mktemp("serve_inputs")
    return {
        "image": write_test_image(folder / "in.png"),
        "audio": write_test_audio(folder / "in.wav", seconds=0.5),
        "video": write_test_video(folder / "in.mp4", seconds=1.0),
    }


def data_url(path: Path, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def media_in(modality: str, path: Path) -> dict:
    """The content part OpenAI (or vLLM, for video) uses for a file of ``modality``."""
    if modality == "audio":
        return {
            "type": "input_audio",
            "input_audio": {"data": base64.b64encode(path.read_bytes()).decode(), "format": "wav"},
        }
    mime = {"image": "image/png", "video": "video/mp4"}[modality]
    return {"type": f"{modality}_url", f"{modality}_url": {"url": data_url(path, mime)}}


def user(*parts) -> list[dict]:
    return [{"role": "user", "content": list(parts)}]


def text(value: str) -> dict:
    return {"type": "text", "text": value}


def media_parts(content) -> dict[str, dict]:
    return {p["type"].removesuffix("_url"): p for p in content if isinstance(p, dict) and p["type"] != "text"}


def read_media(part: dict, modality: str, tiny_model, tmp_path: Path):
    """Decode a returned data URL to a file and read it with the modality's own loader."""
    url = part[f"{modality}_url"]["url"]
    header, _, data = url.partition(",")
    path = tmp_path / f"out_{modality}{tiny_model.specs[modality].output_extension}"
    path.write_bytes(base64.b64decode(data))
    return header, tiny_model.specs[modality].load(path)


def test_health_and_models(server, client):
    with urllib.request.urlopen(f"{server['url']}/health") as response:
        assert json.loads(response.read())["status"] == "ok"
    assert [m.id for m in client.models.list().data] == ["tiny"]


def test_kept_alive_connections_answer_without_the_delayed_ack_wait(server):
    """Without TCP_NODELAY each answer on a kept-alive connection waited ~40 ms for the client's
    delayed ACK between its headers and its body."""
    import http.client
    import statistics

    host, port = server["url"].removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port))
    times = []
    for _ in range(8):
        began = time.perf_counter()
        connection.request("GET", "/health")
        connection.getresponse().read()
        times.append(time.perf_counter() - began)
    connection.close()
    assert statistics.median(times[1:]) < 0.02, times


@pytest.mark.parametrize(("modality", "mime"), [("image", "image/png"), ("audio", "audio/wav"), ("video", "video/mp4")])
def test_each_modality_in_and_out(client, inputs, tiny_model, tmp_path, modality, mime):
    answer = client.chat.completions.create(
        model="tiny",
        messages=user(media_in(modality, inputs[modality]), text(f"what is this {modality}? make one")),
        modalities=["text", modality],
        extra_body={"steps": 1, "seed": 5},
        **({"audio": {"voice": "alloy", "format": "wav"}} if modality == "audio" else {}),  # as OpenAI asks
    )
    message = answer.choices[0].message
    parts = media_parts(message.content)
    assert list(parts) == [modality]
    header, item = read_media(parts[modality], modality, tiny_model, tmp_path)
    assert header == f"data:{mime};base64" and item is not None
    assert parts[modality][f"{modality}_url"]["mime_type"] == mime
    if modality == "audio":  # also as OpenAI's message.audio
        assert base64.b64decode(message.audio.data)[:4] == b"RIFF" and message.audio.transcript is not None
    else:
        assert message.audio is None


def test_stream_sends_text_deltas_then_media_then_done(client, tiny_model):
    request = dict(model="tiny", messages=user(text("draw and sing")), modalities=["text", "image", "audio"])
    chunks = list(client.chat.completions.create(**request, stream=True, seed=11))
    deltas = [c.choices[0].delta for c in chunks]
    pieces = [d.content for d in deltas if d.content]
    media = [p for d in deltas for p in (d.model_extra or {}).get("content_parts", [])]
    assert len(pieces) >= 2 and [p["type"] for p in media] == ["image_url", "audio_url"]
    last_text = max(i for i, d in enumerate(deltas) if d.content)
    first_media = min(i for i, d in enumerate(deltas) if (d.model_extra or {}).get("content_parts"))
    assert last_text < first_media and chunks[-1].choices[0].finish_reason in ("stop", "length")
    whole = client.chat.completions.create(**request, seed=11)
    assert "".join(pieces) == whole.choices[0].message.content[0]["text"]


def test_two_requests_at_once_take_turns_on_the_model(server, client):
    server["model"].peak = 0

    def ask(n: int):
        return client.chat.completions.create(
            model="tiny", messages=user(text(f"request {n}")), modalities=["text", "image"], seed=n
        )

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(ask, [1, 2]))
    assert all(media_parts(a.choices[0].message.content) for a in answers)
    assert answers[0].id != answers[1].id and server["model"].peak == 1
    assert not list(server["work"].iterdir())  # each request's files went with it


def write_junk(tmp_path: Path) -> Path:
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a picture" * 10)
    return junk


def bad_requests(inputs, tmp_path):
    from media_fixtures import write_test_audio

    junk = write_junk(tmp_path)
    big = tmp_path / "big.png"
    from PIL import Image

    Image.new("RGB", (200, 200)).save(big)
    return {
        "malformed data URL": (400, user(media_in_url("image", "data:image/png,nobase64"))),
        "not base64": (400, user(media_in_url("image", "data:image/png;base64,@@@@"))),
        "a web URL": (400, user(media_in_url("image", "https://example.com/cat.png"))),
        "oversized data URL": (413, user(media_in_url("image", "data:image/png;base64," + "A" * (2**20 * 2)))),
        "undecodable file": (400, user(media_in("image", junk))),
        "too many pixels": (413, user(media_in("image", big))),
        "too long a sound": (413, user(media_in("audio", write_test_audio(tmp_path / "long.wav", seconds=4.0)))),
        "oversized request": (413, user(text("x" * 5 * 2**20))),
        "unknown part type": (400, user({"type": "smell_url", "smell_url": {"url": "data:a/b;base64,AAAA"}})),
        "wrong format": (400, user({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "xyz"}})),
    }


def media_in_url(modality: str, url: str) -> dict:
    return {"type": f"{modality}_url", f"{modality}_url": {"url": url}}


def test_bad_requests_get_openai_errors_and_the_server_stays_up(server, client, inputs, tiny_model, tmp_path):
    from nextgpt.errors import MediaError

    with pytest.raises(MediaError) as plugin_error:
        tiny_model.specs["image"].load(write_junk(tmp_path))
    for name, (status, messages) in bad_requests(inputs, tmp_path).items():
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="tiny", messages=messages)
        assert caught.value.status_code == status, name
        error = caught.value.body
        assert error["type"] in ("invalid_request_error",) and error["message"], name
        if name == "undecodable file":
            assert error["message"] == f"messages[0].content[0]: {plugin_error.value.reason}"
    checks = {
        "unknown modality": dict(modalities=["text", "smell"]),
        "bad decode option": dict(extra_body={"steps": -1}),
        "unknown field": dict(extra_body={"stepz": 2}),
        "too long output": dict(extra_body={"seconds": 99}),
    }
    for name, extra in checks.items():
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="tiny", messages=user(text("hi")), **extra)
        assert caught.value.status_code == 400, name
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=user(text("hi")))
    for key in ("", "wrong"):
        stranger = openai.OpenAI(base_url=f"{server['url']}/v1", api_key=key or "x", max_retries=0)
        if not key:
            stranger = stranger.with_options(default_headers={"Authorization": ""})
        with pytest.raises(openai.AuthenticationError) as caught:
            stranger.models.list()
        assert caught.value.status_code == 401
    assert client.chat.completions.create(model="tiny", messages=user(text("still there?"))).choices
    assert not list(server["work"].iterdir())


def test_unknown_modality_error_names_what_it_can_generate(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="tiny", messages=user(text("hi")), modalities=["text", "imag"])
    message = caught.value.body["message"]
    assert "unknown modality 'imag'" in message and "did you mean 'image'" in message and "video" in message


def test_a_full_queue_gets_503_and_a_crash_is_a_500(server, client):
    guarded = server["model"]
    guarded.gate.clear()  # the first request holds the model, the second waits, the third is refused
    ask = dict(model="tiny", messages=user(text("wait")), max_tokens=2)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(client.chat.completions.create, **ask)
        wait_until(lambda: health(server)["pending"] == 1)
        second = pool.submit(client.chat.completions.create, **ask)
        wait_until(lambda: health(server)["pending"] == 2)
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(**ask)
        assert caught.value.status_code == 503 and "busy" in caught.value.body["message"]
        guarded.gate.set()
        assert first.result().choices and second.result().choices
    guarded.fail_next = True
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(**ask)
    assert caught.value.status_code == 500 and "simulated" not in caught.value.body["message"]
    assert client.chat.completions.create(**ask).choices  # still serving


def health(server) -> dict:
    with urllib.request.urlopen(f"{server['url']}/health") as response:
        return json.loads(response.read())


def wait_until(condition, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def readme_serving_commands() -> tuple[list[str], list[str], str]:
    """The README's ``nextgpt serve`` command, its curl request and its openai-client script."""
    from readme_blocks import block_commands, readme_blocks

    blocks = readme_blocks(ROOT / "README.md")
    serve = next(b for b in blocks if b.lang == "bash" and b.text.strip().startswith("nextgpt serve"))
    curl = next(b for b in blocks if b.lang == "bash" and b.text.strip().startswith("curl"))
    client = next(b for b in blocks if b.lang == "python" and "OpenAI(base_url" in b.text)
    return block_commands(serve)[0].argv, block_commands(curl)[0].argv, client.text


def test_serve_command_as_the_readme_shows_with_every_plugin(tmp_path):
    """The README's command (every installed plugin: the 3D example too) answers the README's
    curl request and openai-client script, and a 3D shape in and out."""
    import socket

    serve, curl, script = readme_serving_commands()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    at_port = [a.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for a in curl]
    key = serve[serve.index("--api-key") + 1]
    command = [sys.executable, "-m", "nextgpt", *[port if a == "8000" else a for a in serve[1:]], "--quiet"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: process.poll() is not None or reachable(url), timeout=120)
        assert process.poll() is None, process.stderr.read()
        answer = json.loads(subprocess.run(at_port, capture_output=True, text=True, check=True).stdout)
        assert media_parts(answer["choices"][0]["message"]["content"])["image"]["image_url"]["url"].startswith(
            "data:image/png;base64,"
        )
        ran = subprocess.run(
            [sys.executable, "-c", script.replace("127.0.0.1:8000", f"127.0.0.1:{port}")],
            capture_output=True, text=True, cwd=ROOT, timeout=120,
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        assert "[audio_url: " in ran.stdout
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
        from nextgpt_3d.examples import example_point_cloud
        from nextgpt_3d.media import save_3d

        cloud = save_3d(example_point_cloud(), tmp_path / "cloud.ply")
        answer = client.chat.completions.create(
            model="tiny",
            messages=user(media_in_url("3d", data_url(cloud, "model/ply")), text("a shape like this")),
            modalities=["text", "3d"],
        )
        part = media_parts(answer.choices[0].message.content)["3d"]
        assert part["3d_url"]["url"].startswith("data:model/ply;base64,")
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert "in: text, 3d out: text, 3d: 200" in err  # one progress line per request
    assert "in: text, image out: text, audio: 200 streamed" in err


def reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1):
            return True
    except OSError:
        return False


def test_device_option_places_the_model_and_a_bad_one_is_one_line(tiny_model):
    from nextgpt.cli.options import placement_from_args
    from nextgpt.cli.serve_cmd import add
    from nextgpt.errors import ConfigError

    parser = argparse.ArgumentParser()
    add(parser)
    args = parser.parse_args(["--device", "cpu", "--port", "9", "--api-key", "k", "--max-pixels", "100"])
    assert placement_from_args(args)[0].type == "cpu"
    with pytest.raises(ConfigError, match="--device"):
        placement_from_args(parser.parse_args(["--device", "nope"]))
    from nextgpt.cli.serve_options import settings_from_args

    settings = settings_from_args(args)
    assert (settings.model_name, settings.api_key, settings.max_pixels) == ("tiny", "k", 100)
