from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from r1agent.rewards.judges import EndpointJudge, JudgeLoadError, RewardModelJudge, load_judge


class _Handler(BaseHTTPRequestHandler):
    seen: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Handler.seen.append((self.path, self.headers.get("Authorization"), body))
        content = body["messages"][0]["content"]
        if "broken" in content:
            self.send_response(500)
            self.end_headers()
            return
        rating = "9" if "Ottawa" in content else "Rating: 2"
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": rating}}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(data.encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = HTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()


def test_endpoint_judge_scores_and_reports_failures(server):
    judge = EndpointJudge(server, "judge-model", api_key="k", timeout=5)
    scores = judge.score(
        ["Capital of Canada?", "Capital of Canada?", "x"],
        ["Ottawa.", "Toronto.", "broken"],
    )
    assert scores[0] == pytest.approx(8 / 9)
    assert scores[1] == pytest.approx(1 / 9)
    assert scores[2] is None and judge.failures == 1
    path, auth, body = _Handler.seen[0]
    assert path == "/v1/chat/completions" and auth == "Bearer k"
    assert body["model"] == "judge-model"


def test_load_judge_specs(server, tmp_path):
    assert isinstance(load_judge(server + "#m"), EndpointJudge)
    with pytest.raises(ValueError, match="judge spec"):
        load_judge("bogus")
    with pytest.raises(JudgeLoadError, match="no-such-model"):
        RewardModelJudge(str(tmp_path / "no-such-model"))
